//! Passport's pod mutation webhook. Mutation, AdmissionReview handling and the HTTPS server arrive with the webhook issue.
