from django.urls import path

from mailcloak.aliases import views

app_name = "aliases"
urlpatterns = [
    path("", views.alias_list, name="list"),
    path("<int:pk>/", views.alias_detail, name="detail"),
    path("<int:pk>/toggle/", views.alias_toggle, name="toggle"),
    path("<int:pk>/delete/", views.alias_delete, name="delete"),
    path("<int:pk>/block/", views.alias_block, name="block"),
    path("<int:pk>/conversations/", views.alias_new_conversation, name="new_conversation"),
    path("blocked/", views.blocked_list, name="blocked"),
    path("blocked/<int:pk>/delete/", views.blocked_delete, name="blocked_delete"),
]
