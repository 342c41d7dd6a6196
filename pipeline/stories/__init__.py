"""Filing articles into stories: duplicates, the story engine, upkeep and merges.

Modules, in dependency order (import names from the module that owns them):
`features` (what assignment compares about an article), `store` (the story state's shape and where it is kept),
`scoring` (article-to-story scores, the join rule), `story` (how reports and merges grow a story), `index` (the
candidate index over live stories), `upkeep` (settle/merge, expire), `engine` (`StoryEngine`: assign, replay),
`offline` (the engine over a file: `newsflow cluster`, evaluation).
"""
