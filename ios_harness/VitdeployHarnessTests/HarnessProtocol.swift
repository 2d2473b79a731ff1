import Foundation

/// The vitdeploy harness protocol (docs/harness-protocol.md), iOS side.
enum HarnessProtocol {
    static let name = "vitdeploy-harness"
    static let version = 1
    static let computeUnits = ["cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine", "all"]
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A tensor stored as raw little-endian bytes next to request.json / result.json.
struct TensorSpec {
    let file: String
    let shape: [Int]
    let dtype: String

    var json: [String: Any] { ["file": file, "shape": shape, "dtype": dtype] }
}

struct HarnessRequest {
    let requestId: String
    let model: String
    let inputs: [TensorSpec]
    let runs: Int
    let warmup: Int
    let computeUnits: [String]
    let outputDir: String?

    /// Parse and validate request.json; errors read like the host's one-line messages.
    static func load(from url: URL) throws -> HarnessRequest {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw HarnessError("cannot read request \(url.path): \(error.localizedDescription)")
        }
        guard let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw HarnessError("request is not a JSON object")
        }
        guard json["protocol"] as? String == HarnessProtocol.name else { throw HarnessError("not a vitdeploy-harness request") }
        guard json["version"] as? Int == HarnessProtocol.version else { throw HarnessError("unsupported protocol version") }
        guard json["platform"] as? String == "ios" else { throw HarnessError("request is not for platform ios") }
        guard let requestId = json["request_id"] as? String, let model = json["model"] as? String,
              !model.contains("/") else {
            throw HarnessError("request needs request_id and a bare model file name")
        }
        guard let units = json["compute_units"] as? [String], !units.isEmpty else {
            throw HarnessError("request needs compute_units")
        }
        if let bad = units.first(where: { !HarnessProtocol.computeUnits.contains($0) }) {
            throw HarnessError("unknown compute unit \(bad)")
        }
        guard let rawInputs = json["inputs"] as? [[String: Any]], !rawInputs.isEmpty else {
            throw HarnessError("request needs inputs")
        }
        let inputs = try rawInputs.map { t -> TensorSpec in
            guard let file = t["file"] as? String, let shape = t["shape"] as? [Int],
                  (t["dtype"] as? String ?? "float32") == "float32" else {
                throw HarnessError("each input needs file, shape and dtype float32")
            }
            return TensorSpec(file: file, shape: shape, dtype: "float32")
        }
        let runs = json["runs"] as? Int ?? 50
        let warmup = json["warmup"] as? Int ?? 5
        guard runs >= 1, warmup >= 0 else { throw HarnessError("runs must be >= 1 and warmup >= 0") }
        return HarnessRequest(requestId: requestId, model: model, inputs: inputs, runs: runs, warmup: warmup,
                              computeUnits: units, outputDir: json["output_dir"] as? String)
    }
}

/// Result JSON builders: JSONSerialization keeps explicit nulls, which Codable would drop.
enum ResultJSON {
    static func null(_ value: Any?) -> Any { value ?? NSNull() }

    static func write(_ object: [String: Any], to url: URL) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        // Write to a temp name and move, so the host never copies a half-written file.
        let tmp = url.appendingPathExtension("tmp")
        try data.write(to: tmp, options: .atomic)
        if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
        try FileManager.default.moveItem(at: tmp, to: url)
    }
}
