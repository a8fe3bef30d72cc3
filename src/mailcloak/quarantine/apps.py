from django.apps import AppConfig


class QuarantineConfig(AppConfig):
    name = "mailcloak.quarantine"
    label = "quarantine"
