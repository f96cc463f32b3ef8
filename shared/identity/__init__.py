"""Users, roles and tokens: who is calling, from which institution, with which roles."""
