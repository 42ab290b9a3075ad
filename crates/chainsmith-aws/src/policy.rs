//! IoT policy documents and their evaluation.
