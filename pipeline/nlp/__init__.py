"""Reading an article: language, canonical named entities (spaCy + gazetteer), text features."""
