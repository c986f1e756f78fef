from tispacectl.cli import app

app()
