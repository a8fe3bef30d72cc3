from django.urls import path

from mailcloak.quarantine import views, views_actions, views_forwarded, views_links

app_name = "quarantine"
urlpatterns = [
    path("", views.quarantine_list, name="list"),
    path("<int:pk>/", views.message_detail, name="detail"),
    path("<int:pk>/body/", views.message_body, name="body"),
    path("<int:pk>/raw/", views.message_raw, name="raw"),
    path("<int:pk>/block/", views_actions.block, name="block"),
    path("<int:pk>/disable-alias/", views_actions.disable_alias, name="disable_alias"),
    path("<int:pk>/delete/", views_actions.delete, name="delete"),
    path("<int:pk>/release/", views_actions.release, name="release"),
    path("delete/", views_actions.bulk_delete, name="bulk_delete"),
    path("undo/", views_actions.undo, name="undo"),
    path("activity/", views.activity_log, name="activity"),
    path("forwarded/", views_forwarded.forwarded_list, name="forwarded"),
    path("forwarded/<int:pk>/spam/", views_forwarded.forwarded_spam, name="forwarded_spam"),
    path("settings/", views.preferences, name="settings"),
    path("link/<str:token>/", views_links.action_link, name="link"),
]
