"""The portal's forms: sign-in, keys, invitations and the request log's search."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import User
from django.utils import timezone

from portal.selectors import models_usable_by
from tenants.models import Tenant, TenantRole
from tenants.signin import ThrottledAdminAuthenticationForm


class SignInForm(ThrottledAdminAuthenticationForm):
    """The console's throttled sign-in, open to every active user rather than to staff only."""

    error_messages = {
        **ThrottledAdminAuthenticationForm.error_messages,
        "invalid_login": AuthenticationForm.error_messages["invalid_login"],
    }

    def confirm_login_allowed(self, user: User) -> None:
        AuthenticationForm.confirm_login_allowed(self, user)


class KeyModelsForm(forms.Form):
    """The models a key is narrowed to, among those its tenant may use (none: all of the tenant's)."""

    models = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"invalid_choice": "%(value)s is not a model this tenant may use."},
        help_text="Leave all unticked for every model the tenant may use.",
    )

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tenant = tenant
        field = self.fields["models"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(model.public_id, model.public_id) for model in models_usable_by(tenant=tenant)]

    def clean_models(self) -> list[int]:
        """The chosen models' ids: the choices hold the tenant's models only, so any other was refused already."""
        chosen = models_usable_by(tenant=self.tenant).filter(public_id__in=self.cleaned_data["models"])
        return list(chosen.values_list("pk", flat=True))


class KeyCreateForm(KeyModelsForm):
    name = forms.CharField(max_length=200, help_text="What the key is for, e.g. 'checkout service, prod'.")
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="UTC. Leave empty for a key that does not expire.",
    )

    field_order = ["name", "expires_at", "models"]

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data["expires_at"]
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


class InviteForm(forms.Form):
    # The email becomes a new user's username, which holds at most 150 characters.
    email = forms.EmailField(max_length=150)
    role = forms.ChoiceField(choices=TenantRole.choices, initial=TenantRole.MEMBER)


class RequestSearchForm(forms.Form):
    request_id = forms.CharField(required=False, max_length=200, label="Request id")
    model = forms.CharField(required=False, max_length=200)
    key = forms.CharField(required=False, max_length=16, label="Key prefix")
    status = forms.IntegerField(required=False, min_value=100, max_value=599)

    def filters(self) -> dict[str, Any]:
        """The search, as request_log's arguments; an invalid form searches for nothing in particular."""
        if not self.is_valid():
            return {}
        data = self.cleaned_data
        return {
            "request_id": data["request_id"].strip(),
            "model": data["model"].strip(),
            "key_prefix": data["key"].strip(),
            "status": data["status"],
        }
