"""``python -m nyceo.cli``."""

from nyceo.cli import app

app()
