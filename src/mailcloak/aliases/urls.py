from django.urls import path

from mailcloak.aliases import views, views_domains

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
    path("domains/", views_domains.domain_list, name="domain_list"),
    path("domains/<int:pk>/", views_domains.domain_detail, name="domain_detail"),
    path("domains/<int:pk>/check/", views_domains.domain_check, name="domain_check"),
    path("domains/<int:pk>/catch-all/", views_domains.domain_catch_all, name="domain_catch_all"),
    path("domains/<int:pk>/aliases/", views_domains.domain_alias_create, name="domain_alias"),
    path("domains/<int:pk>/delete/", views_domains.domain_delete, name="domain_delete"),
]
