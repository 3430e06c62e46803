//! Azure: federated identity credentials on user-assigned managed identities (ARM REST).
