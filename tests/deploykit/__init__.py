"""Reading the deploy artifacts (Dockerfile, docker-compose.yml, the Helm chart) as the tools do.

Unit tests check their invariants; integration tests turn a rendered worker into a local process.
"""
