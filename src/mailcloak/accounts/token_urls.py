"""URLs of the tokens page, included by accounts/urls.py under /account/tokens/."""

from django.urls import path

from mailcloak.accounts import token_views

urlpatterns = [
    path("", token_views.token_list, name="tokens"),
    path("<int:token_id>/revoke/", token_views.token_revoke, name="token_revoke"),
]
