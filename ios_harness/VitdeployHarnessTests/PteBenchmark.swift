import ExecuTorch
import Foundation

/// The .pte side of the iOS harness (docs/harness-protocol.md): ExecuTorch's `Module` from the
/// `executorch` Swift package (branch swiftpm-<version>, products executorch, backend_xnnpack,
/// backend_coreml, kernels_optimized, kernels_quantized, linked with -all_load so the backends and
/// kernels register themselves; see project.pbxproj).
///
/// Compute units: "cpu" times a program without Core ML parts (XNNPACK delegate, portable and
/// optimized kernels); "coreml" times a program lowered with the Core ML delegate, on the compute
/// units fixed when it was lowered (ExecuTorch has no per-run switch for them). A unit the program
/// cannot honour is reported as that config's error, as vitdeploy.formats.executorch.unit_mismatch says.
///
/// Not run here: vitdeploy is developed on Linux without Xcode or an iPhone; tests/test_devices.py
/// checks this file's syntax (tree-sitter) and the calls it makes against the ExecuTorch API.
enum PteBenchmark {
    static let coreMLBackend = "CoreMLBackend"

    /// Why `unit` cannot run a program with these delegates (nil: it can).
    static func unitMismatch(unit: String, backends: [String]) -> String? {
        let coreML = backends.contains(coreMLBackend)
        if unit == "coreml" && !coreML {
            return "compute unit coreml needs a .pte lowered with the Core ML delegate; this one has "
                + (backends.isEmpty ? "no delegate" : backends.joined(separator: ", ")) + " (use cpu)"
        }
        if unit == "cpu" && coreML {
            return "this .pte was lowered with the Core ML delegate (\(coreMLBackend)); use coreml"
        }
        return nil
    }

    /// One configuration: load the program (load_ms) and forward (init_ms), check the unit against the
    /// method's backends and the inputs against its tensor metadata, then time forward.
    static func runConfig(unit: String, modelURL: URL, request: HarnessRequest, inDir: URL, outDir: URL,
                          peakMemoryKb: () -> Int?) -> [String: Any] {
        var json: [String: Any] = ["name": unit, "compute_unit": unit, "threads": NSNull()]
        do {
            let loadStart = now()
            let module = Module(filePath: modelURL.path)
            try module.load()
            let loadMs = ms(since: loadStart)
            let initStart = now()
            try module.load("forward")
            let initMs = ms(since: initStart)

            let metadata = try module.methodMetadata("forward")
            if let why = unitMismatch(unit: unit, backends: metadata.backendNames) {
                throw HarnessError(why)
            }
            let declared = metadata.inputTensorMetadata
            guard declared.count == request.inputs.count else {
                throw HarnessError("forward takes \(declared.count) inputs, the request gives \(request.inputs.count)")
            }
            var inputs: [Tensor<Float>] = []
            for (i, spec) in request.inputs.enumerated() {
                if let shape = declared[i]?.shape, shape != spec.shape {
                    throw HarnessError("input \(i) has shape \(shape), the request gives \(spec.shape)")
                }
                inputs.append(try floatTensor(spec, in: inDir))
            }

            let (first, firstOutput) = try timedForward(module, inputs)
            var output = firstOutput
            for _ in 0..<request.warmup { _ = try timedForward(module, inputs) }
            var latencies: [Double] = []
            for _ in 0..<request.runs {
                let (elapsed, out) = try timedForward(module, inputs)
                latencies.append(elapsed)
                output = out
            }
            json["status"] = "ok"
            json["error"] = NSNull()
            json["load_ms"] = loadMs
            json["init_ms"] = initMs
            json["first_inference_ms"] = first
            json["latencies_ms"] = latencies
            json["peak_memory_kb"] = ResultJSON.null(peakMemoryKb())
            json["outputs"] = try writeOutputs(output, name: unit, to: outDir)
            json["op_placement"] = NSNull()  // MLComputePlan describes Core ML models, not .pte programs
        } catch {
            json["status"] = "error"
            json["error"] = "\(error)".split(separator: "\n").first.map(String.init) ?? "unknown error"
            json["latencies_ms"] = [Double]()
            json["outputs"] = [[String: Any]]()
            json["op_placement"] = NSNull()
        }
        return json
    }

    /// Raw little-endian float32 bytes -> a Tensor<Float> of the request's shape (iOS is little-endian).
    static func floatTensor(_ spec: TensorSpec, in dir: URL) throws -> Tensor<Float> {
        guard spec.dtype == "float32" else {
            throw HarnessError("input \(spec.file) is \(spec.dtype); a .pte takes float32")
        }
        let data = try Data(contentsOf: dir.appendingPathComponent(spec.file))
        let count = spec.shape.reduce(1, *)
        guard data.count == count * MemoryLayout<Float>.size else {
            throw HarnessError("\(spec.file) has \(data.count) bytes, shape \(spec.shape) float32 needs \(count * 4)")
        }
        let scalars: [Float] = data.withUnsafeBytes { raw in
            (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
        return Tensor<Float>(scalars, shape: spec.shape)
    }

    static func timedForward(_ module: Module, _ inputs: [Tensor<Float>]) throws -> (Double, [Value]) {
        let start = now()
        let out: [Value] = try module.forward(inputs)
        return (ms(since: start), out)
    }

    /// Every output as float32 row-major bytes; an output that is not a float32 tensor is an error.
    static func writeOutputs(_ values: [Value], name: String, to dir: URL) throws -> [[String: Any]] {
        var files: [[String: Any]] = []
        for (i, value) in values.enumerated() {
            guard let tensor: Tensor<Float> = value.tensor() else {
                throw HarnessError("output \(i) is not a float32 tensor")
            }
            let file = "\(name).output\(i).bin"
            let bytes = tensor.scalars().withUnsafeBufferPointer { Data(buffer: $0) }
            try bytes.write(to: dir.appendingPathComponent(file))
            files.append(TensorSpec(file: file, shape: tensor.shape, dtype: "float32").json)
        }
        guard !files.isEmpty else { throw HarnessError("forward returned no outputs") }
        return files
    }

    private static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    private static func ms(since start: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 }
}
