from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "mailcloak.accounts"
    label = "accounts"

    def ready(self) -> None:
        from mailcloak.accounts import signals  # noqa: F401  (connects receivers)
