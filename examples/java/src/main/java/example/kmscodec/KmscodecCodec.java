package example.kmscodec;

import io.temporal.api.common.v1.Payload;
import io.temporal.common.converter.CodecDataConverter;
import io.temporal.common.converter.DataConverter;
import io.temporal.common.converter.DefaultDataConverter;
import io.temporal.payload.codec.AbstractRemoteDataEncoderCodec;
import io.temporal.payload.codec.PayloadCodecException;
import java.io.IOException;
import java.io.Reader;
import java.io.StringReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.List;
import javax.annotation.Nonnull;

/**
 * A Temporal Java SDK payload codec that hands every payload to a kmscodec sidecar.
 *
 * <p>It follows the Java SDK's remote codec pattern: {@link AbstractRemoteDataEncoderCodec}
 * (artifact {@code io.temporal:temporal-remote-data-encoder}) serializes {@code Payloads} to proto3
 * JSON and POSTs them to {@code {endpoint}/encode} and {@code /decode}, the Temporal Codec Server
 * protocol kmscodec serves; this class supplies the HTTP call: the JDK's {@link HttpClient} (one
 * shared keep-alive connection pool), the {@code X-Namespace} header, a timeout below the 1 s
 * deadlock detector (the SDK converts payloads on workflow threads), and a check that the
 * sidecar answered one payload per payload sent.
 *
 * <pre>{@code
 * WorkflowClient client = WorkflowClient.newInstance(service,
 *     WorkflowClientOptions.newBuilder()
 *         .setNamespace("default")
 *         .setDataConverter(KmscodecCodec.dataConverter("http://127.0.0.1:8089", "default"))
 *         .build());
 * // WorkerFactory.newInstance(client) gives workers the same converter.
 * }</pre>
 *
 * <p>Not built on the machine this was written on (no Maven registry); see README.md.
 */
public final class KmscodecCodec extends AbstractRemoteDataEncoderCodec {
  /** One client per process: it keeps idle connections to the sidecar open for reuse. */
  private static final HttpClient HTTP =
      HttpClient.newBuilder()
          .version(HttpClient.Version.HTTP_1_1)
          .connectTimeout(Duration.ofMillis(300))
          .build();

  private final String namespace;
  private final Duration timeout;

  /**
   * @param endpoint the sidecar's base URL, e.g. {@code http://127.0.0.1:8089}
   * @param namespace the Temporal namespace the payloads belong to
   * @param timeout one encode/decode call, e.g. 800 ms
   */
  public KmscodecCodec(String endpoint, String namespace, Duration timeout) {
    super(endpoint.replaceAll("/+$", ""));
    this.namespace = namespace;
    this.timeout = timeout;
  }

  /**
   * The default converter with payloads sealed by the sidecar, and encoded failure attributes
   * ({@code true}): failure messages and stack traces are sealed too.
   */
  public static DataConverter dataConverter(String endpoint, String namespace) {
    return new CodecDataConverter(
        DefaultDataConverter.newDefaultInstance(),
        List.of(new KmscodecCodec(endpoint, namespace, Duration.ofMillis(800))),
        true);
  }

  @Nonnull
  @Override
  public List<Payload> encode(@Nonnull List<Payload> payloads) {
    return sameCount("encode", payloads, super.encode(payloads));
  }

  @Nonnull
  @Override
  public List<Payload> decode(@Nonnull List<Payload> payloads) {
    return sameCount("decode", payloads, super.decode(payloads));
  }

  @Override
  protected Reader performPost(String url, String json) throws IOException {
    HttpRequest request =
        HttpRequest.newBuilder(URI.create(url))
            .timeout(timeout)
            .header("Content-Type", CONTENT_TYPE_APPLICATION_JSON)
            .header("X-Namespace", namespace)
            .POST(HttpRequest.BodyPublishers.ofString(json))
            .build();
    HttpResponse<String> response;
    try {
      response = HTTP.send(request, HttpResponse.BodyHandlers.ofString());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("kmscodec call interrupted", e);
    }
    if (response.statusCode() != 200) {
      // kmscodec's error bodies are short and never contain payload data.
      throw new IOException("kmscodec answered HTTP " + response.statusCode() + ": " + response.body());
    }
    return new StringReader(response.body());
  }

  private static List<Payload> sameCount(String op, List<Payload> sent, List<Payload> received) {
    if (received.size() != sent.size()) {
      throw new PayloadCodecException(
          "kmscodec " + op + ": sent " + sent.size() + " payloads, got " + received.size());
    }
    return received;
  }
}
