// Package kmscodec connects Temporal Go SDK clients and workers to a kmscodec sidecar.
//
// The SDK's own converter.NewRemotePayloadCodec speaks the Temporal Codec Server protocol
// (POST {endpoint}/encode and /decode with proto3 JSON Payloads) that kmscodec serves; this file
// only adds what a worker needs around it: the namespace header, a keep-alive connection pool,
// a timeout below the deadlock detector, and encoded failure attributes.
//
//	c, err := client.Dial(kmscodec.ClientOptions("127.0.0.1:7233", "default", "http://127.0.0.1:8089"))
//	w := worker.New(c, "my-task-queue", worker.Options{}) // workers built from c use the codec too
//
// Not built on the machine this was written on (no Go toolchain or module proxy); see ../README.md.
package kmscodec

import (
	"net/http"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// CallTimeout bounds one encode/decode call. Go converts payloads inside workflow code, where
// the deadlock detector fails a workflow task whose code runs 1 s without yielding: stay below.
const CallTimeout = 800 * time.Millisecond

// DataConverter is the SDK's default converter with every payload sealed by the sidecar at
// endpoint (for example "http://127.0.0.1:8089") for namespace.
func DataConverter(endpoint, namespace string) converter.DataConverter {
	codec := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{
		Endpoint: strings.TrimSuffix(endpoint, "/"),
		// kmscodec takes the namespace from X-Namespace (or from a /{namespace}/ path prefix).
		ModifyRequest: func(req *http.Request) error {
			req.Header.Set("X-Namespace", namespace)
			return nil
		},
		// One client, one pool of keep-alive connections to the sidecar, shared by every call.
		Client: http.Client{
			Timeout: CallTimeout,
			Transport: &http.Transport{
				MaxIdleConnsPerHost: 16,
				IdleConnTimeout:     90 * time.Second,
			},
		},
	})
	// The remote codec does not retry: a failed call fails the workflow task, which the server
	// retries. The wrapper keeps the time spent in the codec out of the deadlock detector's
	// count, so a slow call fails on CallTimeout with a clear error rather than as a "deadlock".
	return workflow.DataConverterWithoutDeadlockDetection(
		converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), codec),
	)
}

// ClientOptions returns client options whose payloads and failure messages and stack traces
// (EncodeCommonAttributes) go through the sidecar. Set the same options on every client that
// starts, signals or reads these workflows.
func ClientOptions(hostPort, namespace, endpoint string) client.Options {
	dataConverter := DataConverter(endpoint, namespace)
	return client.Options{
		HostPort:      hostPort,
		Namespace:     namespace,
		DataConverter: dataConverter,
		FailureConverter: temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
			DataConverter:          dataConverter,
			EncodeCommonAttributes: true,
		}),
	}
}
