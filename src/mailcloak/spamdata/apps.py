from django.apps import AppConfig


class SpamDataConfig(AppConfig):
    name = "mailcloak.spamdata"
    label = "spamdata"
    verbose_name = "Spam filter training"
    default_auto_field = "django.db.models.BigAutoField"
