import Foundation

/// The vitdeploy harness protocol (docs/harness-protocol.md), iOS side.
enum HarnessProtocol {
    static let name = "vitdeploy-harness"
    static let version = 1
    static let computeUnits = ["cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine", "all"]
    /// vitdeploy.devices.protocol.PTE_COMPUTE_UNITS["ios"]: units of an ExecuTorch .pte request.
    static let pteComputeUnits = ["cpu", "coreml"]
    /// vitdeploy.devices.protocol.MODEL_SUFFIXES["ios"].
    static let modelSuffixes = [".mlpackage", ".pte"]
    /// float32 for multi-array inputs; uint8 [H, W, C] pixels (RGB, or one gray channel) for image inputs.
    static let inputDtypes = ["float32", "uint8"]
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

    /// An ExecuTorch program (run with Module, PteBenchmark.swift) rather than a Core ML package.
    var isPte: Bool { model.hasSuffix(".pte") }

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
        guard HarnessProtocol.modelSuffixes.contains(where: { model.hasSuffix($0) }) else {
            throw HarnessError("model must be a .mlpackage or .pte, got \(model)")
        }
        let pte = model.hasSuffix(".pte")
        guard let units = json["compute_units"] as? [String], !units.isEmpty else {
            throw HarnessError("request needs compute_units")
        }
        let allowed = pte ? HarnessProtocol.pteComputeUnits : HarnessProtocol.computeUnits
        if let bad = units.first(where: { !allowed.contains($0) }) {
            throw HarnessError(pte ? "unknown .pte compute unit \(bad)" : "unknown compute unit \(bad)")
        }
        guard let rawInputs = json["inputs"] as? [[String: Any]], !rawInputs.isEmpty else {
            throw HarnessError("request needs inputs")
        }
        let inputs = try rawInputs.map { t -> TensorSpec in
            let dtype = t["dtype"] as? String ?? "float32"
            guard let file = t["file"] as? String, !file.contains("/"), let shape = t["shape"] as? [Int],
                  HarnessProtocol.inputDtypes.contains(dtype) else {
                throw HarnessError("each input needs a bare file name, a shape and dtype float32 or uint8")
            }
            guard !pte || dtype == "float32" else { throw HarnessError("a .pte takes float32 inputs, got \(dtype)") }
            return TensorSpec(file: file, shape: shape, dtype: dtype)
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

    /// The result on one line between the marker lines a farm's test spec reads from xcodebuild's output
    /// (vitdeploy/devices/farms/payload.py MARK_BEGIN / MARK_END): no devicectl needed on the farm's host.
    static func echo(_ object: [String: Any], tag: String) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
              let text = String(data: data, encoding: .utf8) else { return }
        print("@@VITDEPLOY-RESULT-BEGIN \(tag)@@\n\(text)\n@@VITDEPLOY-RESULT-END \(tag)@@")
        fflush(stdout)
    }
}

/// How a pixel buffer stores one pixel: the formats Core ML image inputs ask for
/// (MLImageConstraint.pixelFormatType: 32BGRA for RGB/BGR models, OneComponent8 for grayscale).
/// Plain Swift, no CoreVideo, so the byte shuffling is separate from the buffer plumbing.
enum PixelLayout {
    case bgra  // kCVPixelFormatType_32BGRA: B, G, R, A
    case argb  // kCVPixelFormatType_32ARGB: A, R, G, B
    case gray  // kCVPixelFormatType_OneComponent8

    var bytesPerPixel: Int { self == .gray ? 1 : 4 }
    var channels: Int { self == .gray ? 1 : 3 }

    /// Copy row-major [height, width, channels] pixels (RGB order, or one gray channel) into rows
    /// `bytesPerRow` apart: CVPixelBuffer pads its rows, so width * bytesPerPixel is not the stride.
    func fill(_ pixels: [UInt8], width: Int, height: Int, into dest: UnsafeMutablePointer<UInt8>, bytesPerRow: Int) {
        for y in 0..<height {
            let row = dest + y * bytesPerRow
            for x in 0..<width {
                let src = (y * width + x) * channels
                let out = row + x * bytesPerPixel
                switch self {
                case .bgra:
                    out[0] = pixels[src + 2]; out[1] = pixels[src + 1]; out[2] = pixels[src]; out[3] = 255
                case .argb:
                    out[0] = 255; out[1] = pixels[src]; out[2] = pixels[src + 1]; out[3] = pixels[src + 2]
                case .gray:
                    out[0] = pixels[src]
                }
            }
        }
    }
}
