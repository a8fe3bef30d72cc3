from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import include, path


def home(request: HttpRequest) -> HttpResponse:
    return redirect("/aliases/" if request.user.is_authenticated else "/accounts/login/")


urlpatterns = [
    path("", home, name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
]
