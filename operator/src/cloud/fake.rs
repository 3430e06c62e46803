//! In-memory fakes of the cloud traits, for controller unit tests.
