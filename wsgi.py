from dashboard import create_app

server = create_app()
