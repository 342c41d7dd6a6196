"""Filing articles into stories: duplicates, the story engine, upkeep and merges."""
