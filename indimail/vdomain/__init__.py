"""Virtual domains and users: IndiMail's schema and the store over SQLite or MySQL."""
