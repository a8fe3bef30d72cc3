from django.apps import AppConfig


class AliasesConfig(AppConfig):
    name = "mailcloak.aliases"
    label = "aliases"
