"""Talking to other servers: article pages and Coral's GraphQL API."""
