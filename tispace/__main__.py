from tispace.cli import app

app()
