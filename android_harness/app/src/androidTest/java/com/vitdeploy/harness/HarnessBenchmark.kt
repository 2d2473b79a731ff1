package com.vitdeploy.harness

import android.os.Build
import android.os.Debug
import android.os.SystemClock
import android.util.Log
import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import org.json.JSONArray
import org.json.JSONObject
import org.junit.Assert.assertNotNull
import org.junit.Test
import org.junit.runner.RunWith
import org.pytorch.executorch.DType
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Delegate
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.TensorFlowLite
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate
import java.io.File
import java.io.RandomAccessFile
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel

private const val TAG = "VitdeployHarness"
private const val PROTOCOL = "vitdeploy-harness"
private const val VERSION = 1
/** org.pytorch:executorch-android in app/build.gradle.kts (the runtime has no version call to ask). */
private const val EXECUTORCH_VERSION = "1.5.1"
/** The delegate id MethodMetadata.backends reports for a program lowered with the Core ML delegate. */
private const val COREML_BACKEND = "CoreMLBackend"

/**
 * Runs one vitdeploy harness request (docs/harness-protocol.md):
 *
 *   adb shell am instrument -w -r -e request /data/local/tmp/vitdeploy/<id>/request.json \
 *       com.vitdeploy.harness.test/androidx.test.runner.AndroidJUnitRunner
 *
 * The test fails only when the request itself is unusable; a configuration that
 * cannot run (no GPU, NNAPI rejects an op) is reported in result.json instead.
 *
 * The model's suffix picks the runtime: a .tflite runs on LiteRT's Interpreter, a .pte on
 * ExecuTorch's Module (compute unit "cpu": its XNNPACK delegate, at each thread count).
 * Not run here: no Android SDK on the development machine; tests/test_devices.py checks this
 * file's contract and tests/adb_emulator.py does what it does with the host runtimes.
 */
@RunWith(AndroidJUnit4::class)
class HarnessBenchmark {

    @Test
    fun run() {
        val requestPath = InstrumentationRegistry.getArguments().getString("request")
        assertNotNull("missing instrumentation argument 'request' (-e request PATH)", requestPath)
        val requestFile = File(requestPath!!)
        val request = Request.parse(requestFile)
        // Creates /sdcard/Android/data/<pkg>/files so the output dir below can be made without permissions.
        InstrumentationRegistry.getInstrumentation().targetContext.getExternalFilesDir(null)
        val outDir = request.outputDir?.let { File(it) } ?: requestFile.parentFile!!
        check(outDir.isDirectory || outDir.mkdirs()) { "cannot create output dir $outDir" }

        val configs = JSONArray()
        for (config in request.configs()) {
            Log.i(TAG, "running ${config.name}")
            configs.put(if (request.isPte) runPteConfig(request, config, requestFile.parentFile!!, outDir)
                        else runConfig(request, config, requestFile.parentFile!!, outDir))
        }
        val result = JSONObject()
            .put("protocol", PROTOCOL)
            .put("version", VERSION)
            .put("request_id", request.requestId)
            .put("status", "ok")
            .put("error", JSONObject.NULL)
            .put("device", deviceInfo(request.isPte))
            .put("configs", configs)
        // Write then rename, so the host never pulls a half-written result.
        val tmp = File(outDir, "result.json.tmp")
        tmp.writeText(result.toString(2))
        check(tmp.renameTo(File(outDir, "result.json"))) { "cannot write ${outDir}/result.json" }
        Log.i(TAG, "wrote ${outDir}/result.json")
    }

    private fun runConfig(request: Request, config: Config, inDir: File, outDir: File): JSONObject {
        val json = JSONObject()
            .put("name", config.name)
            .put("compute_unit", config.computeUnit)
            .put("threads", config.threads ?: JSONObject.NULL)
        val delegates = mutableListOf<Delegate>()
        var interpreter: Interpreter? = null
        try {
            // Pinning can fail (EINVAL when the app's cpuset excludes those cores): report what the
            // thread really got, so a "1 thread, big core" figure that was not pinned shows as such.
            config.threads?.let { json.put("cpu_affinity", pinAndReport(CpuAffinity.fastestCpus(it))) }
            resetPeakRss()

            val t0 = SystemClock.elapsedRealtimeNanos()
            val model = mapModel(File(inDir, request.model))
            val t1 = SystemClock.elapsedRealtimeNanos()
            val options = interpreterOptions(config, delegates)
            val interp = Interpreter(model, options).also { interpreter = it }
            interp.allocateTensors()
            val t2 = SystemClock.elapsedRealtimeNanos()

            val inputs = loadInputs(interp, request, inDir)
            // Every output's protocol dtype before timing: a type the protocol lacks fails now, not
            // after the runs. (getOutputTensor throws for FLOAT16: Java's DataType has no such type.)
            val outputTypes = (0 until interp.outputTensorCount).map { dtypeName(interp.getOutputTensor(it).dataType()) }
            val outputs = HashMap<Int, Any>()
            for (i in 0 until interp.outputTensorCount) {
                outputs[i] = ByteBuffer.allocateDirect(interp.getOutputTensor(i).numBytes())
                    .order(ByteOrder.nativeOrder())
            }
            val first = timedRun(interp, inputs, outputs)
            repeat(request.warmup) { timedRun(interp, inputs, outputs) }
            val latencies = JSONArray()
            repeat(request.runs) { latencies.put(timedRun(interp, inputs, outputs)) }

            json.put("status", "ok")
                .put("error", JSONObject.NULL)
                .put("load_ms", (t1 - t0) / 1e6)
                .put("init_ms", (t2 - t1) / 1e6)
                .put("first_inference_ms", first)
                .put("latencies_ms", latencies)
                .put("peak_memory_kb", peakRssKb() ?: JSONObject.NULL)
                .put("outputs", writeOutputs(interp, outputs, outputTypes, config.name, outDir))
                .put("op_placement", JSONObject.NULL)
        } catch (e: Throwable) {
            // One broken config must not hide the others: report it and go on.
            Log.e(TAG, "${config.name} failed", e)
            json.put("status", "error")
                .put("error", "${e.javaClass.simpleName}: ${e.message?.lineSequence()?.firstOrNull() ?: "no message"}")
                .put("latencies_ms", JSONArray())
                .put("outputs", JSONArray())
                .put("op_placement", JSONObject.NULL)
        } finally {
            interpreter?.close()
            delegates.forEach { it.close() }
            CpuAffinity.unpin()
        }
        return json
    }

    /**
     * One configuration of a .pte: Module.load (memory-mapped, with the config's XNNPACK thread count),
     * forward loaded before the clock for the first inference starts, float32 inputs through
     * Tensor.fromBlob, each output tensor written as raw little-endian bytes. Same result fields
     * as [runConfig]; a program lowered with the Core ML delegate is refused (only iOS runs it).
     */
    private fun runPteConfig(request: Request, config: Config, inDir: File, outDir: File): JSONObject {
        val json = JSONObject()
            .put("name", config.name)
            .put("compute_unit", config.computeUnit)
            .put("threads", config.threads ?: JSONObject.NULL)
        var module: Module? = null
        try {
            check(config.computeUnit == "cpu") { "unknown .pte compute unit ${config.computeUnit}" }
            config.threads?.let { json.put("cpu_affinity", pinAndReport(CpuAffinity.fastestCpus(it))) }
            resetPeakRss()

            val t0 = SystemClock.elapsedRealtimeNanos()
            val mod = Module.load(File(inDir, request.model).path, Module.LOAD_MODE_MMAP, config.threads ?: 0)
                .also { module = it }
            val t1 = SystemClock.elapsedRealtimeNanos()
            // Module's constructor reads every method's backends from the program; check them before
            // loadMethod, which would fail on the missing backend with a less telling error code.
            val backends = mod.getMethodMetadata("forward").backends.toList()
            check(COREML_BACKEND !in backends) {
                "this .pte was lowered with the Core ML delegate ($COREML_BACKEND); only iOS runs it"
            }
            mod.loadMethod("forward")
            val t2 = SystemClock.elapsedRealtimeNanos()

            val inputs = Array(request.inputs.size) { i -> EValue.from(pteInput(request.inputs[i], i, inDir)) }
            val first = timedForward(mod, inputs)
            var outputs = first.second
            repeat(request.warmup) { timedForward(mod, inputs) }
            val latencies = JSONArray()
            repeat(request.runs) {
                val (ms, out) = timedForward(mod, inputs)
                latencies.put(ms)
                outputs = out
            }

            json.put("status", "ok")
                .put("error", JSONObject.NULL)
                .put("load_ms", (t1 - t0) / 1e6)
                .put("init_ms", (t2 - t1) / 1e6)
                .put("first_inference_ms", first.first)
                .put("latencies_ms", latencies)
                .put("peak_memory_kb", peakRssKb() ?: JSONObject.NULL)
                .put("outputs", writePteOutputs(outputs, config.name, outDir))
                .put("op_placement", JSONObject.NULL)
        } catch (e: Throwable) {
            Log.e(TAG, "${config.name} failed", e)
            json.put("status", "error")
                .put("error", "${e.javaClass.simpleName}: ${e.message?.lineSequence()?.firstOrNull() ?: "no message"}")
                .put("latencies_ms", JSONArray())
                .put("outputs", JSONArray())
                .put("op_placement", JSONObject.NULL)
        } finally {
            module?.destroy()
            CpuAffinity.unpin()
        }
        return json
    }

    /** A float32 input file as an ExecuTorch tensor of the request's shape. */
    private fun pteInput(spec: TensorSpec, index: Int, dir: File): Tensor {
        check(spec.dtype == "float32") { "input $index is ${spec.dtype}; a .pte takes float32" }
        val bytes = File(dir, spec.file).readBytes()
        val count = spec.shape.fold(1L) { n, d -> n * d }
        check(bytes.size.toLong() == count * 4) { "${spec.file} has ${bytes.size} bytes, expected ${count * 4}" }
        val floats = FloatArray(count.toInt())
        ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(floats)
        return Tensor.fromBlob(floats, spec.shape.map { it.toLong() }.toLongArray())
    }

    private fun timedForward(module: Module, inputs: Array<EValue>): Pair<Double, Array<EValue>> {
        val start = SystemClock.elapsedRealtimeNanos()
        val out = module.forward(*inputs)
        return Pair((SystemClock.elapsedRealtimeNanos() - start) / 1e6, out)
    }

    /** Each output tensor as raw little-endian bytes in the protocol's dtype; other values are refused. */
    private fun writePteOutputs(outputs: Array<EValue>, name: String, dir: File): JSONArray {
        val files = JSONArray()
        outputs.forEachIndexed { i, value ->
            check(value.isTensor) { "output $i is not a tensor" }
            val tensor = value.toTensor()
            val (dtype, bytes) = pteOutputBytes(tensor, i)
            val file = "$name.output$i.bin"
            File(dir, file).writeBytes(bytes)
            files.put(JSONObject()
                .put("file", file)
                .put("shape", JSONArray(tensor.shape().toList()))
                .put("dtype", dtype))
        }
        return files
    }

    /** The protocol's name for an output tensor's type and its bytes (little-endian). */
    private fun pteOutputBytes(tensor: Tensor, index: Int): Pair<String, ByteArray> = when (tensor.dtype()) {
        DType.FLOAT -> tensor.dataAsFloatArray.let { a ->
            Pair("float32", ByteBuffer.allocate(a.size * 4).order(ByteOrder.LITTLE_ENDIAN).apply { asFloatBuffer().put(a) }.array())
        }
        DType.INT32 -> tensor.dataAsIntArray.let { a ->
            Pair("int32", ByteBuffer.allocate(a.size * 4).order(ByteOrder.LITTLE_ENDIAN).apply { asIntBuffer().put(a) }.array())
        }
        DType.INT64 -> tensor.dataAsLongArray.let { a ->
            Pair("int64", ByteBuffer.allocate(a.size * 8).order(ByteOrder.LITTLE_ENDIAN).apply { asLongBuffer().put(a) }.array())
        }
        DType.INT8 -> Pair("int8", tensor.dataAsByteArray)
        DType.UINT8 -> Pair("uint8", tensor.dataAsUnsignedByteArray)
        else -> error("output $index is ${tensor.dtype()}, which the harness does not write")
    }

    /** Pin to `cpus`, then read the mask back: {"requested", "pinned", "mask", "error"} (docs/harness-protocol.md). */
    private fun pinAndReport(cpus: List<Int>): JSONObject {
        val error = CpuAffinity.pin(cpus)
        if (error != null) Log.w(TAG, error)
        val mask = CpuAffinity.currentMask()
        return JSONObject()
            .put("requested", JSONArray(cpus))
            .put("pinned", error == null && mask.toSet() == cpus.toSet())
            .put("mask", JSONArray(mask))
            .put("error", error ?: if (mask.toSet() == cpus.toSet()) JSONObject.NULL else "mask is $mask after pinning")
    }

    private fun interpreterOptions(config: Config, delegates: MutableList<Delegate>): Interpreter.Options {
        val options = Interpreter.Options()
        when (config.computeUnit) {
            // An fp16-compute .tflite carries reduced_precision_support=fp16accfp16: XNNPACK then runs it in
            // fp16 on cores with FP16 arithmetic (ARMv8.2+), as `vitdeploy parity --cpu` checks under emulation.
            "xnnpack" -> options.setUseXNNPACK(true).setNumThreads(config.threads!!)
            "cpu" -> options.setUseXNNPACK(false).setNumThreads(config.threads!!)
            "gpu" -> {
                val compat = CompatibilityList()
                check(compat.isDelegateSupportedOnThisDevice) { "GPU delegate is not supported on this device" }
                val gpu = GpuDelegate(compat.bestOptionsForThisDevice)
                delegates += gpu
                options.addDelegate(gpu).setUseXNNPACK(false)
            }
            "nnapi" -> {
                check(Build.VERSION.SDK_INT >= 27) { "NNAPI needs Android 8.1 or later" }
                // nnapi-reference is NNAPI's own CPU fallback: excluding it makes a
                // model the accelerators can't run fail instead of silently timing the CPU.
                val nnapi = NnApiDelegate(NnApiDelegate.Options().setUseNnapiCpu(false))
                delegates += nnapi
                options.addDelegate(nnapi).setUseXNNPACK(false)
            }
            else -> error("unknown compute unit ${config.computeUnit}")
        }
        return options
    }

    private fun mapModel(file: File): MappedByteBuffer =
        RandomAccessFile(file, "r").use { raf ->
            raf.channel.map(FileChannel.MapMode.READ_ONLY, 0, raf.length()).also { it.load() }
        }

    private fun loadInputs(interpreter: Interpreter, request: Request, dir: File): Array<Any> {
        check(interpreter.inputTensorCount == request.inputs.size) {
            "model has ${interpreter.inputTensorCount} inputs, the request gives ${request.inputs.size}"
        }
        return Array(request.inputs.size) { i ->
            val spec = request.inputs[i]
            val tensor = interpreter.getInputTensor(i)
            // The host sends each input in the model's own type (a quantized-input model gets
            // int8/uint8/int16 values it quantized with the tensor's scale and zero point).
            check(dtypeName(tensor.dataType()) == spec.dtype) {
                "input $i is ${tensor.dataType()}; the request gives ${spec.dtype}"
            }
            check(tensor.shape().toList() == spec.shape) {
                "input $i has shape ${tensor.shape().toList()}, the request gives ${spec.shape}"
            }
            val bytes = File(dir, spec.file).readBytes()
            check(bytes.size == tensor.numBytes()) { "${spec.file} has ${bytes.size} bytes, expected ${tensor.numBytes()}" }
            // Raw little-endian bytes, as the protocol says; native order is little-endian on every Android ABI.
            ByteBuffer.allocateDirect(bytes.size).order(ByteOrder.LITTLE_ENDIAN).put(bytes).also { it.rewind() }
        }
    }

    private fun timedRun(interpreter: Interpreter, inputs: Array<Any>, outputs: Map<Int, Any>): Double {
        inputs.forEach { (it as ByteBuffer).rewind() }
        outputs.values.forEach { (it as ByteBuffer).rewind() }
        val start = SystemClock.elapsedRealtimeNanos()
        interpreter.runForMultipleInputsOutputs(inputs, outputs)
        return (SystemClock.elapsedRealtimeNanos() - start) / 1e6
    }

    private fun writeOutputs(interpreter: Interpreter, outputs: Map<Int, Any>, types: List<String>, name: String,
                             dir: File): JSONArray {
        val files = JSONArray()
        for (i in 0 until interpreter.outputTensorCount) {
            val tensor = interpreter.getOutputTensor(i)
            val buf = outputs.getValue(i) as ByteBuffer
            buf.rewind()
            val bytes = ByteArray(buf.remaining())
            buf.get(bytes)
            val file = "$name.output$i.bin"
            File(dir, file).writeBytes(bytes)
            files.put(JSONObject()
                .put("file", file)
                .put("shape", JSONArray(tensor.shape().toList()))
                .put("dtype", types[i]))
        }
        return files
    }

    /** The protocol's name for a tensor type; every type org.tensorflow.lite.DataType has except STRING. */
    private fun dtypeName(t: DataType): String = when (t) {
        DataType.FLOAT32 -> "float32"
        DataType.INT32 -> "int32"
        DataType.INT64 -> "int64"
        DataType.INT16 -> "int16"
        DataType.INT8 -> "int8"
        DataType.UINT8 -> "uint8"
        DataType.BOOL -> "bool"
        else -> error("tensor type $t is not in the protocol")
    }

    /** Reset the kernel's peak-RSS counter (VmHWM) so each config reports its own peak. */
    private fun resetPeakRss() {
        runCatching { File("/proc/self/clear_refs").writeText("5") }
    }

    /** Peak resident set size of this process (VmHWM); falls back to the current total PSS. */
    private fun peakRssKb(): Int? {
        val hwm = runCatching {
            File("/proc/self/status").readLines().firstOrNull { it.startsWith("VmHWM:") }
                ?.split(Regex("\\s+"))?.getOrNull(1)?.toInt()
        }.getOrNull()
        if (hwm != null) return hwm
        val info = Debug.MemoryInfo()
        Debug.getMemoryInfo(info)
        return info.totalPss.takeIf { it > 0 }
    }

    private fun deviceInfo(pte: Boolean): JSONObject {
        val freqs = CpuAffinity.maxFrequenciesKhz()
        return JSONObject()
            .put("platform", "android")
            .put("manufacturer", Build.MANUFACTURER)
            .put("model", Build.MODEL)
            .put("device", Build.DEVICE)
            .put("soc", if (Build.VERSION.SDK_INT >= 31) Build.SOC_MODEL else Build.HARDWARE)
            .put("os_version", Build.VERSION.RELEASE)
            .put("sdk", Build.VERSION.SDK_INT)
            .put("abi", Build.SUPPORTED_ABIS.firstOrNull() ?: JSONObject.NULL)
            .put("runtime", if (pte) "ExecuTorch $EXECUTORCH_VERSION (org.pytorch:executorch-android, XNNPACK)"
                            else "LiteRT ${TensorFlowLite.runtimeVersion()} (Interpreter API)")
            .put("cpu_max_freq_khz", JSONArray(freqs))
            .put("gpu_delegate_supported", runCatching { CompatibilityList().isDelegateSupportedOnThisDevice }
                .getOrDefault(false))
    }
}

/** One tensor file of the request: raw little-endian bytes plus shape. */
data class TensorSpec(val file: String, val shape: List<Int>, val dtype: String)

/** One configuration to time; `threads` is null for delegates that ignore it. */
data class Config(val name: String, val computeUnit: String, val threads: Int?)

/** The request JSON (docs/harness-protocol.md), validated as strictly as the host does. */
data class Request(
    val requestId: String,
    val model: String,
    val inputs: List<TensorSpec>,
    val runs: Int,
    val warmup: Int,
    val threads: List<Int>,
    val computeUnits: List<String>,
    val outputDir: String?
) {
    /** An ExecuTorch program (run with Module) rather than a LiteRT model. */
    val isPte: Boolean get() = model.endsWith(".pte")

    /** Same expansion as vitdeploy.devices.protocol.expand_configs. */
    fun configs(): List<Config> = computeUnits.flatMap { unit ->
        if (unit == "xnnpack" || unit == "cpu") threads.map { Config("$unit-${it}t", unit, it) }
        else listOf(Config(unit, unit, null))
    }

    companion object {
        private val UNITS = setOf("xnnpack", "cpu", "gpu", "nnapi")
        /** vitdeploy.devices.protocol.PTE_COMPUTE_UNITS["android"]: ExecuTorch's XNNPACK delegate. */
        private val PTE_UNITS = setOf("cpu")
        /** vitdeploy.devices.protocol.MODEL_SUFFIXES["android"]. */
        private val MODEL_SUFFIXES = listOf(".tflite", ".pte")
        /** vitdeploy.devices.protocol.INPUT_DTYPES. */
        private val INPUT_DTYPES = setOf("float32", "int8", "uint8", "int16")

        fun parse(file: File): Request {
            check(file.isFile) { "request file $file not found (is it readable by the app?)" }
            val j = JSONObject(file.readText())
            check(j.optString("protocol") == PROTOCOL) { "not a $PROTOCOL request" }
            check(j.optInt("version") == VERSION) { "unsupported protocol version ${j.opt("version")}" }
            check(j.optString("platform") == "android") { "request is for platform ${j.opt("platform")}" }
            val model = j.getString("model")
            check(!model.contains('/')) { "model must be a bare file name" }
            check(MODEL_SUFFIXES.any { model.endsWith(it) }) { "model must be a .tflite or .pte file, got $model" }
            val pte = model.endsWith(".pte")
            val units = j.getJSONArray("compute_units").strings()
            units.firstOrNull { it !in (if (pte) PTE_UNITS else UNITS) }?.let {
                error(if (pte) "unknown .pte compute unit $it" else "unknown compute unit $it")
            }
            val inputs = j.getJSONArray("inputs").let { arr ->
                (0 until arr.length()).map { i ->
                    val t = arr.getJSONObject(i)
                    val dtype = t.optString("dtype", "float32")
                    check(dtype in INPUT_DTYPES) { "input dtype $dtype is not one of $INPUT_DTYPES" }
                    check(!pte || dtype == "float32") { "a .pte takes float32 inputs, got $dtype" }
                    TensorSpec(t.getString("file"), t.getJSONArray("shape").ints(), dtype)
                }
            }
            return Request(
                requestId = j.getString("request_id"),
                model = model,
                inputs = inputs,
                runs = j.optInt("runs", 50).also { check(it >= 1) { "runs must be >= 1" } },
                warmup = j.optInt("warmup", 5).also { check(it >= 0) { "warmup must be >= 0" } },
                threads = j.optJSONArray("threads")?.ints() ?: listOf(1, 4),
                computeUnits = units,
                outputDir = if (j.isNull("output_dir")) null else j.getString("output_dir")
            )
        }

        private fun JSONArray.strings(): List<String> = (0 until length()).map { getString(it) }
        private fun JSONArray.ints(): List<Int> = (0 until length()).map { getInt(it) }
    }
}
