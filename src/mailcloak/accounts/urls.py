from django.urls import include, path

from mailcloak.accounts import views

app_name = "accounts"
urlpatterns = [
    path("", views.account_settings, name="settings"),
    path("mailboxes/", views.mailbox_list, name="mailboxes"),
    path("mailboxes/verify/<str:token>/", views.mailbox_verify, name="mailbox_verify"),
    path("mailboxes/<int:pk>/resend/", views.mailbox_resend, name="mailbox_resend"),
    path("mailboxes/<int:pk>/delete/", views.mailbox_delete, name="mailbox_delete"),
    path("delete/", views.account_delete, name="delete"),
    path("tokens/", include("mailcloak.accounts.token_urls")),
]
