import CoreML
import CoreVideo
import Darwin
import UIKit
import XCTest

/// Runs one vitdeploy harness request on the phone (docs/harness-protocol.md).
///
/// `xcodebuild test-without-building ... -only-testing:VitdeployHarnessTests/HarnessBenchmarkTests/testRunRequest`
/// with TEST_RUNNER_VITDEPLOY_REQUEST=Documents/vitdeploy/<id>/request.json in xcodebuild's
/// environment: xcodebuild strips the TEST_RUNNER_ prefix and hands VITDEPLOY_REQUEST to this process.
///
/// AWS Device Farm (vitdeploy/devices/farms/xctest.py; not run on a real farm yet): the request and its
/// files ride inside the host app bundle, VITDEPLOY_REQUEST=__TESTHOST__/vitdeploy/request-rK.json comes from
/// the generated .xctestrun, and VITDEPLOY_RESULT_TAG=rK makes the result also print between marker lines.
final class HarnessBenchmarkTests: XCTestCase {

    func testRunRequest() async throws {
        guard let requestPath = ProcessInfo.processInfo.environment["VITDEPLOY_REQUEST"] else {
            throw XCTSkip("VITDEPLOY_REQUEST is not set; vitdeploy passes it as TEST_RUNNER_VITDEPLOY_REQUEST")
        }
        // Relative paths are relative to the app's data container (what devicectl's appDataContainer domain addresses);
        // __TESTHOST__/... (a farm's .xctestrun, if xcodebuild left the placeholder as it is) to the host app bundle.
        let hostPrefix = "__TESTHOST__/"
        let requestURL = requestPath.hasPrefix(hostPrefix)
            ? Bundle.main.bundleURL.appendingPathComponent(String(requestPath.dropFirst(hostPrefix.count)))
            : requestPath.hasPrefix("/") ? URL(fileURLWithPath: requestPath)
            : URL(fileURLWithPath: NSHomeDirectory()).appendingPathComponent(requestPath)
        let resultTag = ProcessInfo.processInfo.environment["VITDEPLOY_RESULT_TAG"]
        let inDir = requestURL.deletingLastPathComponent()
        let request = try HarnessRequest.load(from: requestURL)
        let outDir = request.outputDir.map { path in
            path.hasPrefix("/") ? URL(fileURLWithPath: path) : URL(fileURLWithPath: NSHomeDirectory()).appendingPathComponent(path)
        } ?? inDir
        try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)

        var configs: [[String: Any]] = []
        var resultError: Any = NSNull()
        var status = "ok"
        do {
            if request.isPte {
                // An ExecuTorch program: no Core ML compile step; each unit loads the program itself.
                let modelURL = inDir.appendingPathComponent(request.model)
                for unit in request.computeUnits {
                    configs.append(PteBenchmark.runConfig(unit: unit, modelURL: modelURL, request: request, inDir: inDir,
                                                          outDir: outDir, peakMemoryKb: { self.peakFootprintKb() }))
                }
                let result = resultObject(request, "ok", NSNull(), configs)
                try ResultJSON.write(result, to: outDir.appendingPathComponent("result.json"))
                if let tag = resultTag { ResultJSON.echo(result, tag: tag) }
                return
            }
            let inputs = try request.inputs.map { try loadInput($0, in: inDir) }
            // Compiling .mlpackage -> .mlmodelc does not depend on the compute unit: do it once.
            let compileStart = now()
            let compiledURL: URL
            do {
                compiledURL = try await MLModel.compileModel(at: inDir.appendingPathComponent(request.model))
            } catch {
                throw HarnessError("MLModel.compileModel failed: \(error.localizedDescription)")
            }
            let compileMs = ms(since: compileStart)
            defer { try? FileManager.default.removeItem(at: compiledURL) }
            for unit in request.computeUnits {
                configs.append(await runConfig(unit: unit, compiledURL: compiledURL, compileMs: compileMs,
                                               inputs: inputs, request: request, outDir: outDir))
            }
        } catch {
            // The request was readable, so answer it: the host shows this message instead of a missing file.
            status = "error"
            resultError = "\(error)".split(separator: "\n").first.map(String.init) ?? "unknown error"
        }
        let result = resultObject(request, status, resultError, configs)
        try ResultJSON.write(result, to: outDir.appendingPathComponent("result.json"))
        if let tag = resultTag { ResultJSON.echo(result, tag: tag) }
    }

    private func resultObject(_ request: HarnessRequest, _ status: String, _ error: Any, _ configs: [[String: Any]]) -> [String: Any] {
        [
            "protocol": HarnessProtocol.name, "version": HarnessProtocol.version, "request_id": request.requestId,
            "status": status, "error": error, "device": deviceInfo(pte: request.isPte), "configs": configs,
        ]
    }

    // MARK: - one configuration

    private func runConfig(unit: String, compiledURL: URL, compileMs: Double, inputs: [InputTensor],
                           request: HarnessRequest, outDir: URL) async -> [String: Any] {
        var json: [String: Any] = ["name": unit, "compute_unit": unit, "threads": NSNull()]
        do {
            let config = MLModelConfiguration()
            config.computeUnits = Self.computeUnits(unit)
            // init_ms includes the device-specific compile (ANE/GPU); Core ML caches it, so a
            // second request for the same model loads faster.
            let loadStart = now()
            let model = try MLModel(contentsOf: compiledURL, configuration: config)
            let initMs = ms(since: loadStart)

            let names = model.modelDescription.inputDescriptionsByName.keys.sorted()
            guard names.count == inputs.count else {
                throw HarnessError("model has \(names.count) inputs, the request gives \(inputs.count)")
            }
            var features: [String: MLFeatureValue] = [:]
            for (name, input) in zip(names, inputs) {
                features[name] = try featureValue(input, for: model.modelDescription.inputDescriptionsByName[name]!)
            }
            let provider = try MLDictionaryFeatureProvider(dictionary: features)

            let (first, firstOutput) = try timed(model, provider)
            var output = firstOutput
            for _ in 0..<request.warmup { _ = try timed(model, provider) }
            var latencies: [Double] = []
            for _ in 0..<request.runs {
                let (elapsed, out) = try timed(model, provider)
                latencies.append(elapsed)
                output = out
            }
            json["status"] = "ok"
            json["error"] = NSNull()
            json["load_ms"] = compileMs
            json["init_ms"] = initMs
            json["first_inference_ms"] = first
            json["latencies_ms"] = latencies
            json["peak_memory_kb"] = ResultJSON.null(peakFootprintKb())
            json["outputs"] = try writeOutputs(output, model: model, name: unit, to: outDir)
            json["op_placement"] = await opPlacement(compiledURL: compiledURL, configuration: config)
        } catch {
            json["status"] = "error"
            json["error"] = "\(error)".split(separator: "\n").first.map(String.init) ?? "unknown error"
            json["latencies_ms"] = [Double]()
            json["outputs"] = [[String: Any]]()
            json["op_placement"] = NSNull()
        }
        return json
    }

    static func computeUnits(_ name: String) -> MLComputeUnits {
        switch name {
        case "cpuOnly": return .cpuOnly
        case "cpuAndGPU": return .cpuAndGPU
        case "cpuAndNeuralEngine": return .cpuAndNeuralEngine
        default: return .all
        }
    }

    private func timed(_ model: MLModel, _ provider: MLFeatureProvider) throws -> (Double, MLFeatureProvider) {
        let start = now()
        let out = try model.prediction(from: provider)
        return (ms(since: start), out)
    }

    // MARK: - tensors

    /// One input as the request gives it: float32 values for a multi-array, uint8 pixels for an image.
    enum InputTensor {
        case array(MLMultiArray)
        case pixels([UInt8], TensorSpec)
    }

    private func loadInput(_ spec: TensorSpec, in dir: URL) throws -> InputTensor {
        let data = try Data(contentsOf: dir.appendingPathComponent(spec.file))
        let count = spec.shape.reduce(1, *)
        if spec.dtype == "uint8" {
            guard data.count == count else {
                throw HarnessError("\(spec.file) has \(data.count) bytes, shape \(spec.shape) uint8 needs \(count)")
            }
            return .pixels([UInt8](data), spec)
        }
        return .array(try floatArray(data, spec))
    }

    /// Raw little-endian float32 bytes -> a contiguous float32 MLMultiArray (iOS is little-endian).
    private func floatArray(_ data: Data, _ spec: TensorSpec) throws -> MLMultiArray {
        let count = spec.shape.reduce(1, *)
        guard data.count == count * MemoryLayout<Float32>.size else {
            throw HarnessError("\(spec.file) has \(data.count) bytes, shape \(spec.shape) float32 needs \(count * 4)")
        }
        let array = try MLMultiArray(shape: spec.shape.map { NSNumber(value: $0) }, dataType: .float32)
        let dest = array.dataPointer.bindMemory(to: Float32.self, capacity: count)
        data.withUnsafeBytes { raw in
            for i in 0..<count { dest[i] = Float32(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))) }
        }
        return array
    }

    /// The feature value the model's input wants: a multi-array, or for an ImageType input (the
    /// default Core ML export) a CVPixelBuffer built from the input's own image constraint.
    private func featureValue(_ input: InputTensor, for description: MLFeatureDescription) throws -> MLFeatureValue {
        switch (input, description.type) {
        case let (.array(array), .multiArray):
            return MLFeatureValue(multiArray: array)
        case let (.pixels(pixels, spec), .image):
            guard let constraint = description.imageConstraint else {
                throw HarnessError("image input \(description.name) has no image constraint")
            }
            return MLFeatureValue(pixelBuffer: try pixelBuffer(pixels, spec, constraint, name: description.name))
        case (.array, _):
            throw HarnessError("input \(description.name) is not a multi-array; the request gives float32 values")
        case (.pixels, _):
            throw HarnessError("input \(description.name) is not an image; the request gives uint8 pixels")
        }
    }

    private func pixelBuffer(_ pixels: [UInt8], _ spec: TensorSpec, _ constraint: MLImageConstraint,
                             name: String) throws -> CVPixelBuffer {
        let layout: PixelLayout
        switch constraint.pixelFormatType {
        case kCVPixelFormatType_32BGRA: layout = .bgra
        case kCVPixelFormatType_32ARGB: layout = .argb
        case kCVPixelFormatType_OneComponent8: layout = .gray
        default: throw HarnessError("image input \(name): pixel format \(constraint.pixelFormatType) is not supported")
        }
        let width = constraint.pixelsWide, height = constraint.pixelsHigh
        guard spec.shape == [height, width, layout.channels] else {
            throw HarnessError("image input \(name) takes [\(height), \(width), \(layout.channels)] pixels, the request gives \(spec.shape)")
        }
        var buffer: CVPixelBuffer?
        // IOSurface-backed, as a camera frame is: the Neural Engine and GPU read it without a copy.
        let attributes = [kCVPixelBufferIOSurfacePropertiesKey: [String: Any]()] as CFDictionary
        let status = CVPixelBufferCreate(kCFAllocatorDefault, width, height, constraint.pixelFormatType, attributes, &buffer)
        guard status == kCVReturnSuccess, let buffer else {
            throw HarnessError("CVPixelBufferCreate failed for input \(name): \(status)")
        }
        CVPixelBufferLockBaseAddress(buffer, [])
        defer { CVPixelBufferUnlockBaseAddress(buffer, []) }
        guard let base = CVPixelBufferGetBaseAddress(buffer) else {
            throw HarnessError("no base address in the pixel buffer for input \(name)")
        }
        layout.fill(pixels, width: width, height: height, into: base.assumingMemoryBound(to: UInt8.self),
                    bytesPerRow: CVPixelBufferGetBytesPerRow(buffer))
        return buffer
    }

    /// Every multi-array output as float32 row-major bytes; MLShapedArray(converting:) undoes fp16 and
    /// strides. Classifier exports also return classLabel (a String) and probabilities (a dictionary):
    /// they are not tensors, so they are skipped; at least one multi-array output must remain.
    private func writeOutputs(_ output: MLFeatureProvider, model: MLModel, name: String, to dir: URL) throws -> [[String: Any]] {
        var files: [[String: Any]] = []
        let keys = model.modelDescription.outputDescriptionsByName.keys.sorted()
        for key in keys {
            guard let multi = output.featureValue(for: key)?.multiArrayValue else { continue }
            let shaped = MLShapedArray<Float>(converting: multi)
            let file = "\(name).output\(files.count).bin"
            let bytes = shaped.scalars.withUnsafeBufferPointer { Data(buffer: $0) }
            try bytes.write(to: dir.appendingPathComponent(file))
            files.append(TensorSpec(file: file, shape: shaped.shape, dtype: "float32").json)
        }
        guard !files.isEmpty else {
            throw HarnessError("the model has no multi-array output (outputs: \(keys.joined(separator: ", ")))")
        }
        return files
    }

    // MARK: - per-op placement (iOS 17.4+)

    private func opPlacement(compiledURL: URL, configuration: MLModelConfiguration) async -> Any {
        guard #available(iOS 17.4, *) else { return NSNull() }
        do {
            let plan = try await MLComputePlan.load(contentsOf: compiledURL, configuration: configuration)
            guard case let .program(program) = plan.modelStructure, let main = program.functions["main"] else {
                return NSNull()  // neural-network models have layers, not MIL operations
            }
            var ops: [[String: Any]] = []
            collect(main.block, plan: plan, into: &ops)
            return ops
        } catch {
            return NSNull()
        }
    }

    @available(iOS 17.4, *)
    private func collect(_ block: MLModelStructure.Program.Block, plan: MLComputePlan, into ops: inout [[String: Any]]) {
        for op in block.operations where op.operatorName != "const" {  // constants run nowhere
            let usage = plan.deviceUsage(for: op)
            ops.append([
                "index": ops.count,
                "op": op.operatorName,
                "device": usage.map { Self.deviceName($0.preferred) } ?? "unknown",
                "supported": usage?.supported.map { Self.deviceName($0) } ?? [String](),
                "cost": ResultJSON.null(plan.estimatedCost(of: op)?.weight),
            ])
            for inner in op.blocks { collect(inner, plan: plan, into: &ops) }
        }
    }

    @available(iOS 17.0, *)
    static func deviceName(_ device: MLComputeDevice) -> String {
        switch device {
        case .cpu: return "cpu"
        case .gpu: return "gpu"
        case .neuralEngine: return "neuralEngine"
        @unknown default: return "unknown"
        }
    }

    // MARK: - device and clocks

    private func deviceInfo(pte: Bool) -> [String: Any] {
        var sys = utsname()
        uname(&sys)
        let machine = withUnsafeBytes(of: &sys.machine) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return [
            "platform": "ios", "model": machine, "device": UIDevice.current.model,
            "os_version": UIDevice.current.systemVersion,
            "memory_gb": Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824,
            "runtime": pte ? "ExecuTorch (swiftpm executorch package, see project.pbxproj)"
                : "Core ML (iOS \(UIDevice.current.systemVersion))",
        ]
    }

    /// Peak physical footprint of the process (what Jetsam counts), from task_vm_info.
    private func peakFootprintKb() -> Int? {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<natural_t>.size)
        let kr = withUnsafeMutablePointer(to: &info) {
            $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) {
                task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count)
            }
        }
        guard kr == KERN_SUCCESS else { return nil }
        return Int(info.ledger_phys_footprint_peak / 1024)
    }

    private func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    private func ms(since start: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 }
}
