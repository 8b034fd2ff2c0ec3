import Foundation
import WeirCodec
import WeirControl

/// Finds, verifies, compiles and warms up the bundles control messages name. Holds only `Sendable`
/// values, so the loader queue runs it while the poll thread keeps the control plane to itself;
/// the models it builds are handed back whole (`sending`) through the plane's mailbox.
struct BundleLoader: Sendable {
    let settings: WorkerSettings
    let modelName: String
    /// The worker's writer schemas (framed input formats), shared with the models it builds.
    let writerSchemas: WriterSchemas
    /// The worker's record format and registered schema ids.
    let records: OutputRecords
    let log: WorkerLog

    /// Loads every bundle of `refs`, or says why the first that fails cannot serve.
    func loadAll(_ refs: [BundleRef], recent: [[UInt8]], active: BundleManifest) -> sending Result<[ServingModel], ControlRejection> {
        Result { () throws(ControlRejection) -> [ServingModel] in
            try refs.map { ref throws(ControlRejection) in try load(ref, recent: recent, active: active).get() }
        }
    }

    /// Checks a bundle a message names without compiling it: location, identity, file hashes,
    /// model name and version (replay, which has no events for the schema check).
    func vet(_ ref: BundleRef) -> ControlRejection? {
        let directory: URL
        switch locate(ref) {
        case .failure(let rejection): return rejection
        case .success(let url): directory = url
        }
        do {
            return mismatch(try ModelBundle.readVerified(directory: directory).0, ref)
        } catch {
            return ControlRejection(rejectionCode(for: error), "\(error)")
        }
    }

    /// A bundle whose files do not match their signed hashes is `bundle-hash`; anything else wrong
    /// with it is `bundle-invalid`.
    func rejectionCode(for error: any Error) -> ControlRejection.Code {
        (error as? BundleError)?.kind == .hashMismatch ? .bundleHash : .bundleInvalid
    }

    /// The directory of `ref`, once its `manifest.json` is the one the message names.
    func locate(_ ref: BundleRef) -> Result<URL, ControlRejection> {
        let directory: URL
        switch ref.directory() {
        case .failure(let error): return .failure(ControlRejection(.bundleUnavailable, error.description))
        case .success(let url): directory = url
        }
        guard let identity = ModelBundle.identity(of: directory) else {
            return .failure(ControlRejection(.bundleUnavailable, "cannot read \(directory.path)/manifest.json"))
        }
        guard identity == ref.sha256 else {
            return .failure(ControlRejection(.bundleHash, "\(directory.path)/manifest.json has sha256 \(identity), the message says \(ref.sha256)"))
        }
        return .success(directory)
    }

    /// Why a bundle's manifest is not the model and version the message names, if it is not.
    func mismatch(_ manifest: BundleManifest, _ ref: BundleRef) -> ControlRejection? {
        guard manifest.name != modelName || manifest.version != ref.version else { return nil }
        return ControlRejection(.bundleInvalid, "the bundle is \(manifest.name) \(manifest.version), not \(modelName) \(ref.version)")
    }

    /// Loads, checks and warms up one bundle (loader queue, or replay).
    func load(_ ref: BundleRef, recent: [[UInt8]], active: BundleManifest) -> Result<ServingModel, ControlRejection> {
        let directory: URL
        switch locate(ref) {
        case .failure(let rejection): return .failure(rejection)
        case .success(let url): directory = url
        }
        let bundle: ModelBundle
        do { bundle = try ModelBundle(directory: directory, options: settings.modelOptions) } catch {
            return .failure(ControlRejection(rejectionCode(for: error), "\(error)"))
        }
        if let rejection = mismatch(bundle.manifest, ref) { return .failure(rejection) }
        let model: ServingModel
        do { model = try ServingModel(bundle: bundle, ref: ref, settings: settings, writerSchemas: writerSchemas,
                                           records: records, log: { [log] in log($0, version: ref.version) }) } catch {
            return .failure(ControlRejection(.bundleInvalid, "\(error)"))
        }
        switch model.warmUp(on: recent, fallbackSchemaOf: active) {
        case .failure(let rejection): return .failure(rejection)
        case .success(let rows):
            if rows > 0 { log("control: \(ref.version) warmed up on \(rows) recent events", version: ref.version) }
            return .success(model)
        }
    }
}
