from django.urls import path

from mailcloak.outbox import views

app_name = "outbox"
urlpatterns = [
    path("", views.outbox_list, name="list"),
    path("<int:pk>/", views.outbox_detail, name="detail"),
]
