"""The Responses API with ragway owning the state: stored responses, and their translation to
the stateless requests workers get."""
