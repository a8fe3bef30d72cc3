from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import include, path

from mailcloak.observability.metrics_view import metrics
from mailcloak.project.privacy import privacy


def home(request: HttpRequest) -> HttpResponse:
    return redirect("aliases:list" if request.user.is_authenticated else "account_login")


urlpatterns = [
    path("", home, name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("account/", include("mailcloak.accounts.urls")),
    path("aliases/", include("mailcloak.aliases.urls")),
    path("quarantine/", include("mailcloak.quarantine.urls")),
    path("outbox/", include("mailcloak.outbox.urls")),
    path("api/", include("mailcloak.api.urls")),
    path("privacy/", privacy, name="privacy"),
    path("metrics", metrics, name="metrics"),
]
