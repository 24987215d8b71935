module example.com/kmscodec-go

go 1.23

// Not resolved here (this machine has no Go module proxy): run `go mod tidy` to fill go.sum.
// Use a Go SDK release that contains temporalio/sdk-go#2000 (merged July 2025): before it, a
// codec error in ToPayload silently sent the payload unencoded (sdk-go#1999, seen in v1.35.0).
require go.temporal.io/sdk v1.36.0
