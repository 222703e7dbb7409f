"""Tiny synthetic classic MR DICOM series written with pydicom, for the conversion tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR = "1.2.840.10008.5.1.4.1.1.4"
SHAPE = (12, 10, 6)  # columns (x), rows (y), slices
VOXEL = (2.0, 2.0, 3.0)


def gre_signal(echo_times, *, seed=0):
    """Magnitude and phase (radians) of a smooth synthetic GRE: phase = 2π·f·TE with f a linear field in Hz."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(n, dtype=float) for n in SHAPE), indexing="ij")
    field_hz = 4.0 * (x - SHAPE[0] / 2) + 3.0 * (y - SHAPE[1] / 2) + 2.0 * z
    m0 = 1000.0 + 200.0 * rng.random(SHAPE)
    magnitudes = [m0 * np.exp(-te / 0.03) for te in echo_times]
    phases = [np.angle(np.exp(1j * (2 * np.pi * field_hz * te + 0.3))) for te in echo_times]
    return magnitudes, phases


def write_series(folder, images, *, series_number, description, image_type, echo_times, manufacturer="SIEMENS",
                 slope=1.0, intercept=0.0, study_uid=None, patient_id="P001", protocol=None, signed=False,
                 extra=None):
    """Write ``images`` (list of (x, y, z) integer arrays, one per echo) as one classic DICOM series.

    Every echo of the series shares the slice positions (a multi-echo series when ``len(images) > 1``).
    Returns the series folder.
    """
    folder = Path(folder) / f"{series_number:03d}_{description.replace(' ', '_')}"
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    study_uid = study_uid or "1.2.826.0.1.3680043.8.498.1"
    number = 0
    for echo_index, (image, te) in enumerate(zip(images, echo_times), start=1):
        for k in range(image.shape[2]):
            number += 1
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MR
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID = MR
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.Modality = "MR"
            ds.Manufacturer = manufacturer
            ds.MagneticFieldStrength = "3"
            ds.PatientName = "Test^Patient"
            ds.PatientID = patient_id
            ds.PatientBirthDate = "19800101"
            ds.PatientSex = "O"
            ds.StudyInstanceUID = study_uid
            ds.StudyDate = "20260101"
            ds.StudyTime = "120000"
            ds.StudyID = "1"
            ds.AccessionNumber = "A1"
            ds.ReferringPhysicianName = ""
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = series_number
            ds.SeriesDescription = description
            ds.ProtocolName = protocol or description
            ds.AcquisitionNumber = 1
            ds.InstanceNumber = number
            ds.ImageType = list(image_type)
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = "SP"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "3D"
            ds.SequenceName = "*fl3d2"
            ds.EchoTime = f"{te * 1e3:.3f}"
            ds.EchoNumbers = echo_index
            ds.RepetitionTime = "30"
            ds.FlipAngle = "15"
            ds.ImagingFrequency = "123.2"
            ds.AcquisitionTime = "120000.000000"
            ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
            ds.ImagePositionPatient = [-10.0, -8.0, -6.0 + VOXEL[2] * k]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing = [VOXEL[1], VOXEL[0]]
            ds.SliceThickness = VOXEL[2]
            ds.SpacingBetweenSlices = VOXEL[2]
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = image.shape[1], image.shape[0]
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1 if signed else 0
            ds.RescaleSlope = f"{slope:g}"
            ds.RescaleIntercept = f"{intercept:g}"
            for key, value in (extra or {}).items():
                setattr(ds, key, value)
            frame = np.ascontiguousarray(image[:, :, k].T).astype(np.int16 if signed else np.uint16)
            ds.PixelData = frame.tobytes()
            ds.save_as(folder / f"IM_{number:04d}.dcm", enforce_file_format=True)
    return folder


def truth_affine():
    """The NIfTI (RAS) affine of the series :func:`write_series` writes (voxel (column, row, slice))."""
    lps = np.array([[VOXEL[0], 0, 0, -10.0], [0, VOXEL[1], 0, -8.0], [0, 0, VOXEL[2], -6.0], [0, 0, 0, 1]])
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def canonical(array):
    """``array`` (as written by :func:`write_series`) in closest-canonical (RAS) voxel order."""
    import nibabel as nib

    return nib.as_closest_canonical(nib.Nifti1Image(np.asarray(array, dtype=np.float64), truth_affine())).get_fdata()


def write_enhanced(folder, image, *, echo_time, part, series_number, description, manufacturer="SIEMENS",
                   slope=1.0, intercept=0.0, signed=False, patient_id="P001"):
    """Write ``image`` ((x, y, z) integers, one echo) as ONE Enhanced MR Image Storage file, frames = slices.

    Shared functional groups hold the pixel measures, orientation, rescale and echo time; each frame its
    plane position, frame type (``ComplexImageComponent`` MAGNITUDE or PHASE) and stack position.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    component = {"mag": "MAGNITUDE", "phase": "PHASE"}[part]
    letter = {"mag": "M", "phase": "P"}[part]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Manufacturer = manufacturer
    ds.MagneticFieldStrength = "3"
    ds.PatientName = "Test^Enhanced"
    ds.PatientID = patient_id
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.11"
    ds.StudyDate, ds.StudyTime = "20260101", "120000"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = ds.ProtocolName = description
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", letter, "NONE"]
    ds.AcquisitionContrast = "T2_STAR"
    ds.ComplexImageComponent = component
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.MRAcquisitionType = "3D"
    ds.EchoPulseSequence = "GRADIENT"
    ds.ScanningSequence = "GR"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.12"
    ds.ContentDate, ds.ContentTime, ds.AcquisitionDateTime = "20260101", "120000", "20260101120000"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    nx, ny, nz = image.shape
    ds.Rows, ds.Columns = ny, nx
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.NumberOfFrames = nz
    stack = Dataset()
    stack.DimensionIndexPointer = 0x00209057  # InStackPositionNumber
    stack.FunctionalGroupPointer = 0x00209111  # FrameContentSequence
    ds.DimensionIndexSequence = [stack]
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [VOXEL[1], VOXEL[0]]
    measures.SliceThickness = VOXEL[2]
    measures.SpacingBetweenSlices = VOXEL[2]
    shared.PixelMeasuresSequence = [measures]
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PlaneOrientationSequence = [orientation]
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = f"{slope:g}", f"{intercept:g}", "US"
    shared.PixelValueTransformationSequence = [transform]
    timing = Dataset()
    timing.RepetitionTime = "30"
    timing.FlipAngle = "15"
    shared.MRTimingAndRelatedParametersSequence = [timing]
    echo = Dataset()
    echo.EffectiveEchoTime = echo_time * 1e3
    shared.MREchoSequence = [echo]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames, pixels = [], []
    for k in range(nz):
        frame = Dataset()
        content = Dataset()
        content.StackID = "1"
        content.InStackPositionNumber = k + 1
        content.DimensionIndexValues = [k + 1]
        frame.FrameContentSequence = [content]
        position = Dataset()
        position.ImagePositionPatient = [-10.0, -8.0, -6.0 + VOXEL[2] * k]
        frame.PlanePositionSequence = [position]
        frame_type = Dataset()
        frame_type.FrameType = ["ORIGINAL", "PRIMARY", letter, "NONE"]
        frame_type.ComplexImageComponent = component
        frame_type.AcquisitionContrast = "T2_STAR"
        frame.MRImageFrameTypeSequence = [frame_type]
        frames.append(frame)
        pixels.append(np.ascontiguousarray(image[:, :, k].T).astype(np.int16 if signed else np.uint16))
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = np.stack(pixels).tobytes()
    path = folder / f"{series_number:03d}_{part}_enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path
