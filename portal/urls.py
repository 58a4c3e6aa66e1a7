"""The tenant portal under /portal/: a tenant's pages are /portal/<tenant slug>/…

A tenant whose slug is `login`, `logout` or `set-password` cannot be reached here: those names are the portal's own.
"""

from django.urls import path

from portal.views import account, keys, members, overview, requests, usage

app_name = "portal"

urlpatterns = [
    path("", account.home, name="home"),
    path("login/", account.sign_in, name="login"),
    path("logout/", account.sign_out, name="logout"),
    path("set-password/<uidb64>/<token>/", account.set_password, name="set-password"),
    path("<slug:slug>/", overview.overview, name="overview"),
    path("<slug:slug>/usage/", usage.usage, name="usage"),
    path("<slug:slug>/usage/export/", usage.usage_export, name="usage-export"),
    path("<slug:slug>/requests/", requests.request_list, name="requests"),
    path("<slug:slug>/requests/<int:row_id>/", requests.request_detail, name="request"),
    path("<slug:slug>/keys/", keys.key_list, name="keys"),
    path("<slug:slug>/keys/created/", keys.key_created, name="key-created"),
    path("<slug:slug>/keys/<int:key_id>/", keys.key_detail, name="key"),
    path("<slug:slug>/keys/<int:key_id>/revoke/", keys.key_revoke, name="key-revoke"),
    path("<slug:slug>/members/", members.member_list, name="members"),
    path("<slug:slug>/members/invited/", members.member_invited, name="member-invited"),
    path("<slug:slug>/members/<int:membership_id>/remove/", members.member_remove, name="member-remove"),
]
