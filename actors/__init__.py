"""actors: an actor-model synchronizer framework."""
