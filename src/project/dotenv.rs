//! Load stage `dotenv` (being written).
