"""controllers: the shared entropy controllers (torch only; nothing from sim/ or llm/).

Lands with the controllers issue; see README.md for the plan.
"""
