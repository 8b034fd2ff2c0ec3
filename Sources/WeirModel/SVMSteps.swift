import CWeirKernels
import Foundation

/// A support vector machine's kernel.
enum SVMKernel: String, CaseIterable, Sendable {
    case linear = "LINEAR", poly = "POLY", rbf = "RBF", sigmoid = "SIGMOID"
}

/// The support vectors and the kernel of an SVM, shared by the classifier and the regressor.
struct SupportVectors: Sendable {
    let kernel: SVMKernel
    let gamma: Float, coef0: Float, degree: Int
    /// [count][features], row-major.
    let vectors: [Float]
    let count: Int
    let features: Int
    /// The vectors transposed (features × count), for the fp32 GEMM kernel.
    let inputMajor: Constants<Float>
    let kernels: KernelSet

    init(kernel: SVMKernel, gamma: Float, coef0: Float, degree: Int, vectors: [Float], count: Int, features: Int, kernels: KernelSet) {
        self.kernel = kernel
        self.gamma = gamma
        self.coef0 = coef0
        self.degree = degree
        self.vectors = vectors
        self.count = count
        self.features = features
        var transposed = [Float](repeating: 0, count: vectors.count)
        for v in 0..<count { for f in 0..<features { transposed[f * count + v] = vectors[v * features + f] } }
        inputMajor = Constants(transposed)
        self.kernels = kernels
    }

    /// K(x_r, vector v) for every row and vector into `out` (rows × count): the dot products of the
    /// linear, poly and sigmoid kernels by the GEMM kernel (as onnxruntime), the RBF by differences.
    func kernelMatrix(_ x: Buffer, into out: UnsafeMutablePointer<Float>) {
        let rows = x.rows
        if kernel == .rbf {
            for r in 0..<rows { for v in 0..<count { out[r * count + v] = self.kernel(x.floats + r * x.width, v) } }
            return
        }
        weir_sgemm(x.floats, x.width, inputMajor.base, count, out, count, rows, features, nil, 0, kernels.c)
        let total = rows * count
        switch kernel {
        case .poly:
            let exponent = Float(degree)
            for i in 0..<total {
                let s = out[i] * gamma + coef0
                out[i] = degree == 2 ? s * s : (degree == 3 ? s * s * s : powf(s, exponent))
            }
        case .sigmoid: for i in 0..<total { out[i] = tanhf(out[i] * gamma + coef0) }
        default: break
        }
    }

    /// K(x, vector v).
    @inline(__always)
    func kernel(_ x: UnsafePointer<Float>, _ v: Int) -> Float {
        vectors.withUnsafeBufferPointer { sv in
            let base = sv.baseAddress! + v * features
            switch kernel {
            case .rbf:
                var sum: Float = 0
                for f in 0..<features { let d = x[f] - base[f]; sum += d * d }
                return expf(-gamma * sum)
            case .linear, .poly, .sigmoid:
                var dot: Float = 0
                for f in 0..<features { dot += x[f] * base[f] }
                switch kernel {
                case .poly: return powf(dot * gamma + coef0, Float(degree))
                case .sigmoid: return tanhf(dot * gamma + coef0)
                default: return dot
                }
            }
        }
    }
}

/// ai.onnx.ml SVMClassifier: one-versus-one support vector classification (or linear scores per
/// class), with Platt-scaled pairwise probabilities coupled as libsvm does, following onnxruntime.
struct SVMClassifierStep: Step {
    let input: Int, labelOutput: Int, scoreOutput: Int
    /// nil: linear mode, `coefficients` [classes][features].
    let supportVectors: SupportVectors?
    let vectorsPerClass: [Int]
    let coefficients: [Float]
    let rho: [Float]
    let probA: [Float], probB: [Float]
    let labels: ClassLabels
    let postTransform: PostTransform
    let scoreWidth: Int
    var summary: String { "SVMClassifier fp32 (\(supportVectors.map { "\($0.count) support vectors, \($0.kernel.rawValue.lowercased())" } ?? "linear"))" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], rows = x.rows, features = x.width
        let classes = labels.count
        let scores = scratch.buffers[scoreOutput], labelBuffer = scratch.buffers[labelOutput]
        scores.prepare(.float, rows: rows, width: scoreWidth)
        labelBuffer.prepare(labels.kind, rows: rows, width: 1, rank: 1)
        let pairs = classes * (classes - 1) / 2
        var raw = [Float](repeating: 0, count: max(pairs, classes))
        var votes = [Int](repeating: 0, count: classes)
        var pairwise = [Float](repeating: 0, count: classes * classes)
        var probabilities = [Float](repeating: 0, count: classes)
        let allPositive = coefficients.allSatisfy { $0 >= 0 }
        var matrix: UnsafeMutablePointer<Float>? = nil
        if let sv = supportVectors {
            scratch.stepMemory[index].reserve(rowBytes: rows * sv.count * MemoryLayout<Float>.stride, rows: 1, sums: 1)
            matrix = scratch.stepMemory[index].rows.bindMemory(to: Float.self, capacity: rows * sv.count)
            sv.kernelMatrix(x, into: matrix!)
        }
        for r in 0..<rows {
            let row = x.floats + r * features
            var rawCount: Int
            var voted = false
            if let sv = supportVectors, let matrix {
                let kernels = matrix + r * sv.count
                for c in 0..<classes { votes[c] = 0 }
                var starts = [Int](), start = 0
                for c in vectorsPerClass { starts.append(start); start += c }
                var evaluation = 0
                for i in 0..<classes {
                    for j in (i + 1)..<max(classes, i + 1) {
                        // Summed in double, as onnxruntime does: the terms cancel.
                        var sum: Double = 0
                        for m in 0..<vectorsPerClass[i] { sum += Double(coefficients[(j - 1) * sv.count + starts[i] + m] * kernels[starts[i] + m]) }
                        for m in 0..<vectorsPerClass[j] { sum += Double(coefficients[i * sv.count + starts[j] + m] * kernels[starts[j] + m]) }
                        sum += Double(rho[evaluation])
                        raw[evaluation] = Float(sum)
                        votes[sum > 0 ? i : j] += 1
                        evaluation += 1
                    }
                }
                rawCount = pairs
                voted = true
            } else {
                for c in 0..<classes {
                    var dot: Float = 0
                    for f in 0..<features { dot += row[f] * coefficients[c * features + f] }
                    raw[c] = rho[0] + dot
                }
                rawCount = classes
            }
            var hasProbabilities = false
            if voted && !probA.isEmpty {
                coupledProbabilities(raw, into: &probabilities, pairwise: &pairwise)
                for c in 0..<classes { raw[c] = probabilities[c] }
                rawCount = classes
                hasProbabilities = true
            }
            // The label: most votes (first on ties), or the highest score in linear mode.
            var best = 0
            if voted {
                for c in 1..<max(classes, 1) where votes[c] > votes[best] { best = c }
            } else {
                for c in 1..<max(rawCount, 1) where raw[c] > raw[best] { best = c }
            }
            // onnxruntime weighs a vote-chosen class as 0 (so votes decide).
            let bestWeight: Float = voted ? 0 : raw[best]
            var label = best
            var addSecondClass = false
            if rho.count == 1 {
                if classes == 2 {
                    addSecondClass = voted && !hasProbabilities
                    if !hasProbabilities && (allPositive && bestWeight >= 0.5 || !allPositive && bestWeight > 0) { label = 1 }
                } else {
                    label = bestWeight > 0 ? 1 : 0
                }
            }
            labels.write(min(label, classes - 1), to: labelBuffer, at: r)
            let out = scores.floats + r * scoreWidth
            if rawCount == 1 && addSecondClass {
                let s = raw[0]
                if postTransform == .none {
                    out[0] = -s; out[1] = s
                } else {
                    var one = [s]
                    applyPostTransform(postTransform, &one, offset: 0, count: 1)
                    out[0] = 1 - one[0]; out[1] = one[0]
                }
            } else {
                applyPostTransform(postTransform, &raw, offset: 0, count: rawCount)
                for c in 0..<min(rawCount, scoreWidth) { out[c] = raw[c] }
            }
        }
    }

    /// libsvm's pairwise coupling of the Platt-scaled pairwise probabilities (as onnxruntime does it).
    private func coupledProbabilities(_ raw: [Float], into p: inout [Float], pairwise r: inout [Float]) {
        let k = labels.count
        var index = 0
        for i in 0..<k {
            for j in (i + 1)..<max(k, i + 1) {
                let value = raw[index] * probA[index] + probB[index]
                // 1 / (1 + e^value), computed without overflow (libsvm's sigmoid_predict).
                let platt: Float = value >= 0 ? expf(-value) / (1 + expf(-value)) : 1 / (1 + expf(value))
                let clamped = min(max(platt, 1e-7), 1 - 1e-7)
                r[i * k + j] = clamped
                r[j * k + i] = 1 - clamped
                index += 1
            }
        }
        var q = [Float](repeating: 0, count: k * k), qp = [Float](repeating: 0, count: k)
        for t in 0..<k {
            p[t] = 1 / Float(k)
            q[t * k + t] = 0
            for j in 0..<t { q[t * k + t] += r[j * k + t] * r[j * k + t]; q[t * k + j] = q[j * k + t] }
            for j in (t + 1)..<max(k, t + 1) { q[t * k + t] += r[j * k + t] * r[j * k + t]; q[t * k + j] = -r[j * k + t] * r[t * k + j] }
        }
        let epsilon = 0.005 / Float(k)
        for _ in 0..<max(100, k) {
            var pqp: Float = 0
            for t in 0..<k {
                qp[t] = 0
                for j in 0..<k { qp[t] += q[t * k + j] * p[j] }
                pqp += p[t] * qp[t]
            }
            var maxError: Float = 0
            for t in 0..<k { maxError = max(maxError, abs(qp[t] - pqp)) }
            if maxError < epsilon { break }
            for t in 0..<k {
                let diff = (-qp[t] + pqp) / q[t * k + t]
                p[t] += diff
                pqp = (pqp + diff * (diff * q[t * k + t] + 2 * qp[t])) / (1 + diff) / (1 + diff)
                for j in 0..<k {
                    qp[j] = (qp[j] + diff * q[t * k + j]) / (1 + diff)
                    p[j] /= 1 + diff
                }
            }
        }
    }
}

/// ai.onnx.ml SVMRegressor: Σ coefficient · K(x, vector) + rho (or a linear model), optionally one-class (±1).
struct SVMRegressorStep: Step {
    let input: Int, output: Int
    let supportVectors: SupportVectors?
    let coefficients: [Float]
    let rho: Float
    let oneClass: Bool
    var summary: String { "SVMRegressor fp32 (\(supportVectors.map { "\($0.count) support vectors, \($0.kernel.rawValue.lowercased())" } ?? "linear"))" }

    func run(_ scratch: ModelScratch, index: Int) throws {
        let x = scratch.buffers[input], y = scratch.buffers[output]
        y.prepare(.float, rows: x.rows, width: 1)
        var matrix: UnsafeMutablePointer<Float>? = nil
        if let sv = supportVectors {
            scratch.stepMemory[index].reserve(rowBytes: x.rows * sv.count * MemoryLayout<Float>.stride, rows: 1, sums: 1)
            matrix = scratch.stepMemory[index].rows.bindMemory(to: Float.self, capacity: x.rows * sv.count)
            sv.kernelMatrix(x, into: matrix!)
        }
        for r in 0..<x.rows {
            let row = x.floats + r * x.width
            var s: Float = 0
            if let sv = supportVectors, let matrix {
                let kernels = matrix + r * sv.count
                for v in 0..<sv.count { s += coefficients[v] * kernels[v] }
            } else {
                for f in 0..<x.width { s += row[f] * coefficients[f] }
            }
            s += rho
            y.floats[r] = oneClass ? (s > 0 ? 1 : -1) : s
        }
    }
}
