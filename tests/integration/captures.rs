//! Filled in once the real-stack captures land.
