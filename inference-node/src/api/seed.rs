//! The seed's API, kept exactly: `GET /health`, `POST /predict`, plus `GET /models`. Errors
//! answer in FastAPI's shape (`{"detail": ...}`, [`Detail`](crate::error::Detail)).
//!
//! - [`handlers`]: the endpoints and the `/predict` answer.
//! - [`input`]: validation of the `/predict` body, with pydantic's error list.

pub mod handlers;
pub mod input;
