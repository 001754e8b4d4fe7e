// types.js — the JSON contracts between the wasm engine and the page, as JSDoc typedefs: what
// `weights/manifest.json` holds (read through the same Rust types by the CLI and the model
// card) and what the engine returns. The native test `contracts` checks that every field the
// Rust side writes is declared here, and that every required field declared here is written,
// so the page cannot drift from the engine silently. Import for editor checking only:
//   /** @typedef {import('./types.js').Analysis} Analysis */

/** @typedef {'gate' | 'ct' | 'cxr'} ModelId */
/** @typedef {'ct' | 'cxr'} Modality */
/** @typedef {'webgpu' | 'cpu'} Backend */
/** @typedef {'dicom' | 'colour' | 'hounsfield' | 'network'} VerdictSource */

/**
 * @typedef {object} Window
 * @property {number} center
 * @property {number} width
 */

/**
 * @typedef {object} OperatingPoint
 * @property {string} positive_class
 * @property {number} threshold
 * @property {number} target_sensitivity
 * @property {number} validation_sensitivity
 * @property {number} validation_specificity
 * @property {string} chosen_on
 */

/**
 * @typedef {object} ClassRow
 * @property {string} class
 * @property {number} [support]
 * @property {number|null} sensitivity
 * @property {number|null} specificity
 * @property {number|null} precision
 * @property {number|null} f1
 */

/**
 * @typedef {object} RocPoint
 * @property {number} fpr
 * @property {number} tpr
 * @property {number} threshold
 */

/**
 * One subtype of a source's label (MosMed's grades, Kermany's bacterial and viral pneumonia)
 * against the source's images of the other labels.
 * @typedef {object} SubtypeAuc
 * @property {string} source
 * @property {string} label
 * @property {string} subtype
 * @property {number} n
 * @property {number} against
 * @property {number|null} auc
 */

/**
 * Metrics of a model on one labelled set: two classes have `auc` and `positive_class`, more
 * classes `macro_auc` and `auc_per_class`.
 * @typedef {object} Report
 * @property {number} n
 * @property {number|null} accuracy
 * @property {string[]} classes
 * @property {number[][]} confusion
 * @property {ClassRow[]} per_class
 * @property {number|null} ece_raw
 * @property {number|null} ece_calibrated
 * @property {number|null} temperature
 * @property {number[]} class_counts
 * @property {number} [auc]
 * @property {string} [positive_class]
 * @property {number} [macro_auc]
 * @property {Object<string, number|null>} [auc_per_class]
 * @property {Object<string, RocPoint[]>} [roc]
 * @property {object} [at_operating_point]
 * @property {Object<string, Report>} [per_source]
 * @property {object} [patient_level]
 * @property {SubtypeAuc[]} [per_subtype]
 * @property {number} [skipped_unknown_labels]
 * @property {string[]} [failed_to_decode]
 */

/**
 * A classifier's evaluation (`ModelEntry.evaluation` of `ct` and `cxr`).
 * @typedef {object} ModelEvaluation
 * @property {ModelId} model
 * @property {'external' | 'internal_heldout'} set
 * @property {number} n
 * @property {number|null} accuracy
 * @property {number} [auc]
 * @property {number} [macro_auc]
 * @property {{internal_heldout: Report, external: Report}} [sets] from the model's details file
 * @property {Audit} [audit]
 */

/**
 * What a model calls one set of images without its positive disease.
 * @typedef {object} ShortcutCheck
 * @property {string} set
 * @property {number} n
 * @property {Object<string, number>} by_argmax
 * @property {Object<string, number>} at_operating_point
 */

/**
 * The same images through two pipelines.
 * @typedef {object} InvarianceCheck
 * @property {string} set
 * @property {string} transform
 * @property {number} n
 * @property {number} argmax_agreement
 * @property {number} decision_agreement
 * @property {number} median_abs_delta_p
 * @property {number} p90_abs_delta_p
 */

/**
 * Shortcut audit and invariance check (`ModelEvaluation.audit`).
 * @typedef {object} Audit
 * @property {ShortcutCheck[]} shortcuts
 * @property {InvarianceCheck[]} invariance
 * @property {AttentionCheck[]} attention
 */

/**
 * Where Grad-CAM looks on images of the positive class.
 * @typedef {object} AttentionCheck
 * @property {string} set
 * @property {string} class
 * @property {number} layer
 * @property {number} n
 * @property {number} peak_in_lungs
 * @property {number} lung_cells
 * @property {number} without_mask
 */

/**
 * The gate's evaluation (`ModelEntry.evaluation` of `gate`).
 * @typedef {object} GateEvaluation
 * @property {Object<string, object>} acceptance
 * @property {object} natural_photos
 * @property {number} limit
 * @property {AskRule} [ask]
 */

/**
 * When the gate asks which model should read an image instead of accepting it.
 * @typedef {object} AskRule
 * @property {number} ask_below
 * @property {string} rule
 * @property {Object<string, {routed_correctly: number, misrouted: number, rows: {below: number, correct_asked: number, misrouted_asked: number}[]}>} sets
 */

/**
 * @typedef {object} CrossValidation
 * @property {number} folds
 * @property {string} grouping
 * @property {number} [auc_mean]
 * @property {number} [auc_sd]
 * @property {number} [macro_auc_mean]
 * @property {number} [macro_auc_sd]
 * @property {number|null} accuracy_mean
 * @property {number|null} accuracy_sd
 * @property {number|null} ece_raw_mean
 * @property {number|null} ece_after_temperature_mean
 * @property {number|null} ece_after_temperature_sd
 * @property {string} ece_note
 * @property {object[]} per_fold
 * @property {Report} pooled_out_of_fold
 */

/**
 * @typedef {object} TrainingSummary
 * @property {object} config
 * @property {Object<string, Object<string, number>>} pool_sources
 * @property {Object<string, Object<string, number>>} [external_sources]
 * @property {string} [shipped_model]
 * @property {CrossValidation} [cross_validation] from the model's details file
 * @property {string} [trained_on]
 * @property {string} [validation]
 * @property {number} [minutes]
 * @property {string} [machine]
 * @property {LeaveOneSourceOut} [leave_one_source_out]
 */

/**
 * One leave-one-source-out run.
 * @typedef {object} SourceHeldOut
 * @property {string} source
 * @property {Object<string, Object<string, number>>} trained_on
 * @property {number} minutes
 * @property {Report} report
 */

/**
 * Leave-one-source-out evaluation (`TrainingSummary.leave_one_source_out`).
 * @typedef {object} LeaveOneSourceOut
 * @property {SourceHeldOut[]} runs
 * @property {number|null} mean_auc
 * @property {string} note
 */

/**
 * One model of `weights/manifest.json`.
 * @typedef {object} ModelEntry
 * @property {ModelId} id
 * @property {string} title
 * @property {string} [definition]
 * @property {Modality|null} modality
 * @property {string[]} classes
 * @property {string} record
 * @property {string} sha256
 * @property {number} record_bytes
 * @property {'f16' | 'f32'} dtype
 * @property {number} params
 * @property {object} architecture
 * @property {object} preprocess
 * @property {number} [temperature]
 * @property {OperatingPoint} [operating_point]
 * @property {ModelEvaluation | GateEvaluation} [evaluation]
 * @property {TrainingSummary} [training]
 * @property {object} [gate]
 * @property {Provenance} [adapted]
 * @property {string[]} credits
 * @property {string[]} notes
 * @property {string} [details] file of its Details, beside the manifest
 */

/**
 * What the model card draws besides a manifest entry, in `weights/<id>.details.json`: the page
 * fetches it when the card is first seen and puts `sets` in `evaluation` and
 * `cross_validation` in `training`, where the CLI's whole entries hold them.
 * @typedef {object} Details
 * @property {{internal_heldout: Report, external: Report}} [sets]
 * @property {CrossValidation} [cross_validation]
 */

/**
 * @typedef {object} Manifest
 * @property {number} format_version
 * @property {string} disclaimer
 * @property {ModelEntry[]} models
 */

/**
 * What the input gate said about a file.
 * @typedef {object} Verdict
 * @property {boolean} accepted
 * @property {Modality|null} modality
 * @property {VerdictSource} by
 * @property {string} reason
 * @property {number[]|null} probabilities
 * @property {number|null} distance
 * @property {number|null} threshold
 * @property {boolean} unsure
 */

/**
 * @typedef {object} Prediction
 * @property {string[]} classes
 * @property {number[]} logits
 * @property {number[]} probabilities
 * @property {string} label
 * @property {number} label_index
 */

/**
 * The decision at the model's stored operating point.
 * @typedef {object} Decision
 * @property {string} label
 * @property {number} index
 * @property {string} positive_class
 * @property {number} threshold
 * @property {number} target_sensitivity
 * @property {string} rule
 */

/**
 * @typedef {object} Timings
 * @property {number} decode_ms
 * @property {number} gate_ms
 * @property {number} preprocess_ms
 * @property {number} model_ms
 * @property {number} total_ms
 */

/**
 * What the decoder found (`Analysis.image`).
 * @typedef {object} ImageFacts
 * @property {string} format
 * @property {number} width
 * @property {number} height
 * @property {string} intensity
 * @property {number} bits_stored
 * @property {number} source_channels
 * @property {boolean} float_samples
 * @property {string} photometric
 * @property {Window[]} windows
 * @property {string|null} modality
 * @property {string|null} body_part
 * @property {number} frame
 * @property {number} frames
 * @property {object|null} dicom
 * @property {number} replaced_non_finite
 * @property {number} colourfulness
 */

/**
 * The engine's result for one file (`display` and `seen` arrive as Uint8Arrays besides).
 * @typedef {object} Analysis
 * @property {ImageFacts} image
 * @property {Verdict|null} gate
 * @property {boolean} refused
 * @property {ModelId|null} model
 * @property {string|null} model_title
 * @property {boolean} evaluated
 * @property {Prediction|null} prediction
 * @property {Decision|null} decision
 * @property {Window} window
 * @property {string[]} layers
 * @property {{x: number, y: number, width: number, height: number}|null} crop
 * @property {string[]} cautions
 * @property {boolean} below_bar
 * @property {Timings} timings
 * @property {Backend} backend
 * @property {number} display_width
 * @property {number} display_height
 * @property {number} seen_size
 */

/**
 * A Grad-CAM heatmap (`rgba` arrives as a Uint8Array besides).
 * @typedef {object} Heatmap
 * @property {number} class
 * @property {string} class_name
 * @property {number} layer
 * @property {string} layer_name
 * @property {string} colormap
 * @property {number} peak
 * @property {number} score
 * @property {number} map_width
 * @property {number} map_height
 * @property {number} width
 * @property {number} height
 * @property {number} ms
 */

/**
 * What the page must not repeat: the engine's `page_constants()`.
 * @typedef {object} PageConstants
 * @property {number} max_file_bytes
 * @property {number} display_max_side
 * @property {{id: string, label: string, center: number, width: number}[]} window_presets
 * @property {string[]} colormaps
 * @property {{colormap: string, rgb: number[][]}[]} colormap_stops
 * @property {number} heat_transparent_below
 * @property {number} heat_opaque_from
 * @property {Backend[]} backends
 */

/**
 * The shown image through another display window (`display` arrives as a Uint8Array besides).
 * @typedef {object} Display
 * @property {Window} window
 * @property {number} display_width
 * @property {number} display_height
 */

/**
 * The shown image classified once through another window: a teaching one-off, not its result.
 * @typedef {object} WindowTrial
 * @property {Window} window
 * @property {Prediction} prediction
 * @property {Decision|null} decision
 */

/**
 * A CT volume as the engine holds it (its voxels stay in the engine): columns run from the
 * patient's right to left, rows anterior to posterior, slices superior to inferior.
 * @typedef {object} VolumeFacts
 * @property {string} format
 * @property {number} columns
 * @property {number} rows
 * @property {number} slices
 * @property {number[]} spacing_mm
 * @property {number[]} slice_z_mm
 * @property {'oriented' | 'stored_order'} placement
 * @property {string} intensity
 * @property {number} scale
 * @property {number} offset
 * @property {boolean} quantised
 * @property {number} replaced_non_finite
 * @property {number} volumes_in_file
 * @property {string} source
 */

/**
 * What a DICOM folder said about one series (`OpenStudy.series`); each problem is
 * `{kind: 'missing_slices' | 'irregular_spacing' | 'gantry_tilt' | 'duplicate_position' | 'no_positions', …}`.
 * @typedef {object} SeriesFacts
 * @property {string|null} study_instance_uid
 * @property {string|null} series_instance_uid
 * @property {number|null} series_number
 * @property {string|null} description
 * @property {number|null} slice_thickness_mm
 * @property {number} files
 * @property {object[]} problems
 */

/**
 * A study open in the engine: a NIfTI volume or one series of a DICOM folder.
 * @typedef {object} OpenStudy
 * @property {string} name
 * @property {SeriesFacts|null} series
 * @property {VolumeFacts} volume
 * @property {number[]} value_range
 */

/**
 * A file of a folder in no series, and why.
 * @typedef {object} SetAside
 * @property {string} file
 * @property {string} reason
 * @property {boolean} not_dicom
 */

/**
 * What opening a folder (`open_folder`) or a volume file (`open_volume`) gave.
 * @typedef {object} Opened
 * @property {OpenStudy[]} studies
 * @property {SetAside[]} set_aside
 * @property {string[]} single_images
 */

/**
 * One axial slice of a scored study.
 * @typedef {object} SliceScore
 * @property {number} index
 * @property {number} z_mm
 * @property {number} lung_fraction
 * @property {boolean} lung_level
 * @property {number|null} p_covid
 */

/**
 * A scored study (`score_study`; the worker adds `ms`).
 * @typedef {object} StudyScore
 * @property {number|null} study_score
 * @property {'max_slice' | 'top_k_mean'} rule
 * @property {number|null} max_slice
 * @property {number|null} top_k_mean
 * @property {number} k
 * @property {number[]|null} lung_range
 * @property {number} classified
 * @property {SliceScore[]} slices
 * @property {number} [ms]
 */

/**
 * One plane of a study at display size (`display` arrives as a Uint8Array besides).
 * @typedef {object} VolumeView
 * @property {'axial' | 'coronal' | 'sagittal'} plane
 * @property {number} index
 * @property {number} count
 * @property {Window} window
 * @property {number} display_width
 * @property {number} display_height
 * @property {number} width_mm
 * @property {number} height_mm
 */

/**
 * A percentile bootstrap interval.
 * @typedef {object} Interval
 * @property {number} lo
 * @property {number} hi
 * @property {number} level
 * @property {number} resamples
 * @property {'patients' | 'images'} unit
 */

/**
 * One usable file of a user's labelled set (`labelled_begin`).
 * @typedef {object} LabelledFile
 * @property {string} path
 * @property {number} label
 * @property {string|null} group
 * @property {number|null} line
 */

/**
 * A file of a labelled set that is not used, and why (`reason` names the case; `words` says it).
 * @typedef {object} LabelAside
 * @property {string} path
 * @property {number|null} line
 * @property {'unknown_label' | 'no_class_folder' | 'listed_twice' | 'missing_file' | 'bad_row' | 'same_image_as' | 'unreadable' | 'refused'} reason
 * @property {string} words
 * @property {string} [label]
 * @property {number} [first_line]
 * @property {string} [detail]
 * @property {string} [same_as]
 */

/**
 * @typedef {object} ReliabilityBin
 * @property {number} lo
 * @property {number} hi
 * @property {number} n
 * @property {number|null} confidence
 * @property {number|null} accuracy
 */

/**
 * A badly classified file: its index in the measured files.
 * @typedef {object} Miss
 * @property {number} index
 * @property {number} truth
 * @property {number} p_truth
 * @property {number} decided
 */

/**
 * The core's assessment of a model on a labelled set (the page's and `ctxr eval --labelled`'s).
 * @typedef {object} Assessment
 * @property {Report} report
 * @property {Interval|null} auc_ci
 * @property {ReliabilityBin[]} reliability
 * @property {Miss[]} worst
 */

/**
 * A model measured on a user's labelled set: what `labelled` (the worker) resolves to (the
 * engine's `labelled_finish` plus `ms`), and what `ctxr eval --labelled --json` writes (plus
 * `labelled`, the set's path).
 * @typedef {object} Measurement
 * @property {Modality} model
 * @property {string} title
 * @property {string[]} classes
 * @property {string[]} files
 * @property {number[]} truth
 * @property {number[][]} probabilities
 * @property {number[]} counts
 * @property {boolean} grouped
 * @property {LabelAside[]} set_aside
 * @property {Assessment} assessment
 * @property {OperatingPoint|null} operating_point
 * @property {number} image_bytes
 * @property {number} [ms]
 * @property {string} [labelled]
 */

/**
 * The decisions at a threshold (`threshold`): the counts and each file's decided class.
 * @typedef {object} AtThreshold
 * @property {number} threshold
 * @property {string} positive_class
 * @property {number|null} accuracy
 * @property {number[][]} confusion
 * @property {ClassRow[]} per_class
 * @property {number[]} decided
 */

/**
 * How an adaptation was run (`Provenance.config`).
 * @typedef {object} AdaptConfig
 * @property {'head' | 'last' | 'all'} part
 * @property {number} max_epochs
 * @property {number} patience
 * @property {number} batch
 * @property {number} lr
 * @property {number} folds
 * @property {number} hold_one_in
 * @property {number} target_sensitivity
 * @property {number} seed
 */

/**
 * @typedef {object} EpochRecord
 * @property {number} epoch
 * @property {number} train_loss
 * @property {number} train_accuracy
 * @property {number} held_loss
 * @property {number|null} held_auc
 */

/**
 * @typedef {object} FoldRecord
 * @property {number} fold
 * @property {number} train_images
 * @property {number} held_images
 * @property {number} test_images
 * @property {number} best_epoch
 * @property {EpochRecord[]} epochs
 * @property {number|null} auc_before
 * @property {number|null} auc_after
 */

/**
 * @typedef {object} CrossValidated
 * @property {number} folds
 * @property {number|null} auc_before
 * @property {Interval|null} auc_before_ci
 * @property {number|null} auc_after
 * @property {Interval|null} auc_after_ci
 * @property {Interval|null} difference_ci
 * @property {FoldRecord[]} per_fold
 */

/**
 * What an adapted model's manifest entry says of it (`ModelEntry.adapted`).
 * @typedef {object} Provenance
 * @property {string} base_sha256
 * @property {string} base_title
 * @property {AdaptConfig} config
 * @property {number[]} counts
 * @property {boolean} grouped
 * @property {CrossValidated} cross_validation
 * @property {FoldRecord} final_fit
 * @property {string} warning
 */

/**
 * One call of the adaptation (`adapt_step`), as the worker posts it: `{type: 'adapt', progress,
 * steps_max, ms}`.
 * @typedef {object} AdaptProgress
 * @property {'scored' | 'step' | 'epoch' | 'done'} stage
 * @property {number} [done]
 * @property {number} [of]
 * @property {number} [fit]
 * @property {number} [epoch]
 * @property {number} [loss]
 * @property {number} [steps_run]
 * @property {number} [steps_left]
 * @property {EpochRecord} [record]
 * @property {boolean} [stopping]
 */

export {};
