import Foundation
import Synchronization
import WeirCodec
import WeirControl
import WeirStore

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
    /// Where bundles come from (file://, s3://, https://) and the download cache.
    let store: BundleStore
    /// The identities of the bundles loaded now, which the cache must not evict.
    let inUse: @Sendable () -> Set<String>

    /// Loads every bundle of `refs`, or says why the first that fails cannot serve.
    func loadAll(_ refs: [BundleRef], recent: [[UInt8]], active: BundleManifest) -> sending Result<[ServingModel], ControlRejection> {
        Result { () throws(ControlRejection) -> [ServingModel] in
            try refs.map { ref throws(ControlRejection) in try load(ref, recent: recent, active: active).get() }
        }
    }

    /// Checks a bundle a message names without compiling it: location, identity, file hashes,
    /// model name and version (replay, which has no events for the schema check). A remote bundle
    /// is fetched into the cache, so the load that follows reads it from there.
    func vet(_ ref: BundleRef) -> ControlRejection? {
        switch fetch(ref) {
        case .failure(let rejection): return rejection
        case .success(let fetched): return mismatch(fetched.files.manifest, ref)
        }
    }

    /// The bundle `ref` names, verified against its signed sha256 (downloaded or from the cache).
    func fetch(_ ref: BundleRef) -> Result<FetchedBundle, ControlRejection> {
        do { return .success(try store.fetch(location: ref.location, identity: ref.sha256, keeping: inUse())) } catch {
            let kind = (error as? BundleError)?.kind
            let code: ControlRejection.Code = switch kind {
            case .hashMismatch: .bundleHash
            case .unreadable, .unavailable: .bundleUnavailable
            default: .bundleInvalid
            }
            return .failure(ControlRejection(code, "\(error)", retryable: kind == .unavailable))
        }
    }

    /// Why a bundle's manifest is not the model and version the message names, if it is not.
    func mismatch(_ manifest: BundleManifest, _ ref: BundleRef) -> ControlRejection? {
        guard manifest.name != modelName || manifest.version != ref.version else { return nil }
        return ControlRejection(.bundleInvalid, "the bundle is \(manifest.name) \(manifest.version), not \(modelName) \(ref.version)")
    }

    /// Loads, checks and warms up one bundle (loader queue, or replay).
    func load(_ ref: BundleRef, recent: [[UInt8]], active: BundleManifest) -> Result<ServingModel, ControlRejection> {
        let fetched: FetchedBundle
        switch fetch(ref) {
        case .failure(let rejection): return .failure(rejection)
        case .success(let value): fetched = value
        }
        if fetched.origin != "local" {
            if fetched.origin == "downloaded" && ref.location.hasPrefix("s3://") {
                log("control: \(ref.version) downloaded from \(ref.location) with credentials from \(store.s3CredentialSource)", version: ref.version)
            }
            log("control: \(ref.version) \(fetched.origin == "cached" ? "found in" : "downloaded to") the bundle cache (\(fetched.directory.path))",
                version: ref.version)
        }
        let bundle: ModelBundle
        do { bundle = try ModelBundle(files: fetched.files, directory: fetched.directory, options: settings.modelOptions) } catch {
            return .failure(ControlRejection(.bundleInvalid, "\(error)"))
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

/// Bundle identities shared between the poll thread (which sets them) and the loader queue.
final class IdentitySet: Sendable {
    private let value = Mutex<Set<String>>([])
    var current: Set<String> {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}

/// Hands one load's outcome from the loader queue to the poll thread. The models inside are not
/// `Sendable`: they cross over whole (`sending`), and only the poll thread touches them after.
/// Unchecked: `outcome` is read and written only while `lock` is held.
final class LoadMailbox: @unchecked Sendable {
    private let lock = Mutex(())
    private var outcome: Result<[ServingModel], ControlRejection>?

    func put(_ value: sending Result<[ServingModel], ControlRejection>) {
        lock.withLock { _ in outcome = value }
    }

    func take() -> sending Result<[ServingModel], ControlRejection>? {
        lock.withLock { _ in
            defer { outcome = nil }
            return outcome
        }
    }
}
