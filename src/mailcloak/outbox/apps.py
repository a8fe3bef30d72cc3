from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "mailcloak.outbox"
    label = "outbox"
