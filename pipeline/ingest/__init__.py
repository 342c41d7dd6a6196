"""Getting news in: feed registry and scheduling, HTTP fetch, parsing, OPML, URL safety, the poller."""
