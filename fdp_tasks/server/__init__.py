"""The registry over HTTP: the REST app (`app`), its file endpoints (`blobs`), and running it
in a thread, in the foreground or as a background process (`serve`)."""
