"""Signing in and out, setting a first password, and choosing among one's tenants."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse_lazy

from portal.access import LOGIN_URL
from portal.forms import SignInForm
from portal.selectors import memberships_of

sign_in = auth_views.LoginView.as_view(
    template_name="portal/sign_in.html",
    authentication_form=SignInForm,
    redirect_authenticated_user=True,
    next_page="portal:home",
)
sign_out = auth_views.LogoutView.as_view(next_page="portal:login")
# The link an invitation gives a new user: Django's password-reset token, good until the password is set.
set_password = auth_views.PasswordResetConfirmView.as_view(
    template_name="portal/set_password.html",
    post_reset_login=True,
    success_url=reverse_lazy("portal:home"),
)


@login_required(login_url=LOGIN_URL)
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/home.html", {"memberships": memberships_of(user=request.user)})
