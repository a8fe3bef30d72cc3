from django.apps import AppConfig


class MailConfig(AppConfig):
    name = "mailcloak.mail"
    label = "mail"
