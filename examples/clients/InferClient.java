// Calls a model served by `neuropod serve` over the Open Inference Protocol's HTTP/JSON API,
// with nothing but the JDK (11+):
//
//   javac InferClient.java && java InferClient http://127.0.0.1:8000 addition_model
//
// It sends x = [[1, 2, 3]] and y = [[10, 20, 30]] and prints the output tensor "out".

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class InferClient {
    public static void main(String[] args) throws Exception {
        String server = args.length > 0 ? args[0] : "http://127.0.0.1:8000";
        String model = args.length > 1 ? args[1] : "addition_model";
        String token = System.getenv("NEUROPOD_SERVE_TOKEN"); // set when the server has --auth-token

        String body = "{\"inputs\": ["
            + "{\"name\": \"x\", \"shape\": [1, 3], \"datatype\": \"FP32\", \"data\": [1, 2, 3]},"
            + "{\"name\": \"y\", \"shape\": [1, 3], \"datatype\": \"FP32\", \"data\": [10, 20, 30]}"
            + "]}";
        HttpRequest.Builder request = HttpRequest.newBuilder()
            .uri(URI.create(server + "/v2/models/" + model + "/infer"))
            .timeout(Duration.ofSeconds(10))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body));
        if (token != null && !token.isEmpty()) {
            request.header("Authorization", "Bearer " + token);
        }
        // HTTP/1.1: the JDK's default asks to upgrade cleartext connections to HTTP/2 (h2c),
        // which the server's HTTP/1.1 front end refuses.
        HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        HttpResponse<String> response = client
            .send(request.build(), HttpResponse.BodyHandlers.ofString());
        if (response.statusCode() != 200) {
            // Errors are {"error": "..."}: 4xx for a bad request, 500 when the model failed.
            System.err.println("HTTP " + response.statusCode() + ": " + response.body());
            System.exit(1);
        }
        // A JSON library (Jackson, Gson) would parse the whole response; the output's data is
        // enough here.
        Matcher data = Pattern.compile("\"name\":\"out\".*?\"data\":\\[([^\\]]*)\\]").matcher(response.body());
        if (!data.find()) {
            System.err.println("no output 'out' in " + response.body());
            System.exit(1);
        }
        System.out.println("out = [" + data.group(1) + "]");
    }
}
