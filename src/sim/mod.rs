//! The reference conference server (being written).
