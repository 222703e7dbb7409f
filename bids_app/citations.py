"""References of the methods qsmapp uses; a run cites exactly the ones it used."""

from __future__ import annotations

CITATIONS = {
    "qsmapp": "qsmapp: a BIDS App for quantitative susceptibility mapping. https://github.com/qsmapp/qsmapp",
    "bids": "Gorgolewski KJ, et al. The brain imaging data structure. Sci Data 2016;3:160044. doi:10.1038/sdata.2016.44",
    "bids_apps": "Gorgolewski KJ, et al. BIDS apps. PLoS Comput Biol 2017;13:e1005209. doi:10.1371/journal.pcbi.1005209",
    "consensus": "QSM Consensus Organization Committee. Recommended implementation of QSM for clinical research in the brain: a consensus of the ISMRM electro-magnetic tissue properties study group. Magn Reson Med 2024;91:1834-1862. doi:10.1002/mrm.30006",
    "qsmxt": "Stewart AW, et al. QSMxT: Robust masking and artifact reduction for quantitative susceptibility mapping. Magn Reson Med 2022;87:1289-1300. doi:10.1002/mrm.29048",
    "romeo": "Dymerska B, et al. Phase unwrapping with a rapid opensource minimum spanning tree algorithm (ROMEO). Magn Reson Med 2021;85:2294-2308. doi:10.1002/mrm.28563",
    "mcpc3ds": "Eckstein K, et al. Computationally efficient combination of multi-channel phase data from multi-echo acquisitions (ASPIRE / MCPC-3D-S). Magn Reson Med 2018;79:2996-3006. doi:10.1002/mrm.26963",
    "laplacian": "Schofield MA, Zhu Y. Fast phase unwrapping algorithm for interferometric applications. Opt Lett 2003;28:1194-1196. doi:10.1364/OL.28.001194",
    "ghiglia_romero": "Ghiglia DC, Romero LA. Robust two-dimensional weighted and unweighted phase unwrapping that uses fast transforms and iterative methods. J Opt Soc Am A 1994;11:107-117. doi:10.1364/JOSAA.11.000107",
    "otsu": "Otsu N. A threshold selection method from gray-level histograms. IEEE Trans Syst Man Cybern 1979;9:62-66. doi:10.1109/TSMC.1979.4310076",
    "gaussian_threshold": "Balan AGR, et al. Smart histogram analysis applied to the skull-stripping problem in T1-weighted MRI. Comput Biol Med 2012;42:509-522. doi:10.1016/j.compbiomed.2012.01.004",
    "bet": "Smith SM. Fast robust automated brain extraction. Hum Brain Mapp 2002;17:143-155. doi:10.1002/hbm.10062",
    "vsharp": "Wu B, et al. Whole brain susceptibility mapping using compressed sensing. Magn Reson Med 2012;67:137-147. doi:10.1002/mrm.23000",
    "sharp": "Schweser F, et al. Quantitative imaging of intrinsic magnetic tissue properties using MRI signal phase: an approach to in vivo brain iron metabolism? NeuroImage 2011;54:2789-2807. doi:10.1016/j.neuroimage.2010.10.070",
    "resharp": "Sun H, Wilman AH. Background field removal using spherical mean value filtering and Tikhonov regularization. Magn Reson Med 2014;71:1151-1157. doi:10.1002/mrm.24765",
    "ismv": "Wen Y, et al. An iterative spherical mean value method for background field removal in MRI. Magn Reson Med 2014;72:1065-1071. doi:10.1002/mrm.24998",
    "pdf": "Liu T, et al. A novel background field removal method for MRI using projection onto dipole fields (PDF). NMR Biomed 2011;24:1129-1136. doi:10.1002/nbm.1670",
    "lbv": "Zhou D, et al. Background field removal by solving the Laplacian boundary value problem. NMR Biomed 2014;27:312-319. doi:10.1002/nbm.3064",
    "tkd": "Shmueli K, et al. Magnetic susceptibility mapping of brain tissue in vivo using MRI phase data. Magn Reson Med 2009;62:1510-1522. doi:10.1002/mrm.22135",
    "tikhonov": "Bilgic B, et al. Fast image reconstruction with L2-regularization. J Magn Reson Imaging 2014;40:181-191. doi:10.1002/jmri.24365",
    "rts": "Kames C, et al. Rapid two-step dipole inversion for susceptibility mapping with sparsity priors. NeuroImage 2018;167:276-283. doi:10.1016/j.neuroimage.2017.11.018",
    "tv": "Bilgic B, et al. Fast quantitative susceptibility mapping with L1-regularization and automatic parameter selection. Magn Reson Med 2014;72:1444-1459. doi:10.1002/mrm.25029",
    "tgv": "Langkammer C, et al. Fast quantitative susceptibility mapping using 3D EPI and total generalized variation. NeuroImage 2015;111:622-630. doi:10.1016/j.neuroimage.2015.02.041",
    "nextqsm": "Cognolato F, et al. NeXtQSM - A complete deep learning pipeline for data-consistent quantitative susceptibility mapping trained with hybrid data. Med Image Anal 2023;84:102700. doi:10.1016/j.media.2022.102700",
    "axial_resampling": "Kiersnowski OC, et al. The effect of oblique image slices on the accuracy of quantitative susceptibility mapping and a robust tilt correction method. Magn Reson Med 2023;89:1791-1808. doi:10.1002/mrm.29550",
    "clearswi": "Eckstein K, et al. Improved susceptibility weighted imaging at ultra-high field using bipolar multi-echo acquisition and optimized image processing: CLEAR-SWI. NeuroImage 2021;237:118175. doi:10.1016/j.neuroimage.2021.118175",
    "numart2s": "Hagberg GE, et al. Real-time quantification of T2* changes using multiecho planar imaging and numerical methods. Magn Reson Med 2002;48:877-882. doi:10.1002/mrm.10283",
    "arlo": "Pei M, et al. Algorithm for fast monoexponential fitting based on Auto-Regression on Linear Operations (ARLO) of data. Magn Reson Med 2015;73:843-850. doi:10.1002/mrm.25137",
    "weighted_loglinear": "Veraart J, et al. Weighted linear least squares estimation of diffusion MRI parameters: strengths, limitations, and pitfalls. NeuroImage 2013;81:335-346. doi:10.1016/j.neuroimage.2013.05.028",
    "levenberg_marquardt": "Marquardt DW. An algorithm for least-squares estimation of nonlinear parameters. J Soc Ind Appl Math 1963;11:431-441. doi:10.1137/0111030",
    "fastsurfer": "Henschel L, et al. FastSurfer - A fast and accurate deep learning based neuroimaging pipeline. NeuroImage 2020;219:117012. doi:10.1016/j.neuroimage.2020.117012",
    "syn": "Avants BB, et al. Symmetric diffeomorphic image registration with cross-correlation: evaluating automated labeling of elderly and neurodegenerative brain. Med Image Anal 2008;12:26-41. doi:10.1016/j.media.2007.06.004",
    "template": "Avants BB, et al. The optimal template effect in hippocampus studies of diseased populations. NeuroImage 2010;49:2457-2466. doi:10.1016/j.neuroimage.2009.09.062",
    "atropos": "Avants BB, et al. An open source multivariate framework for n-tissue segmentation with evaluation on public data. Neuroinformatics 2011;9:381-400. doi:10.1007/s12021-011-9109-y",
    "n4": "Tustison NJ, et al. N4ITK: improved N3 bias correction. IEEE Trans Med Imaging 2010;29:1310-1320. doi:10.1109/TMI.2010.2046908",
    "ants": "Avants BB, et al. A reproducible evaluation of ANTs similarity metric performance in brain image registration. NeuroImage 2011;54:2033-2044. doi:10.1016/j.neuroimage.2010.09.025",
}


def format_citations(keys) -> str:
    """Markdown list of the references for ``keys`` (unknown keys are a programming error)."""
    ordered = list(dict.fromkeys(["qsmapp", "bids", "bids_apps", *keys]))
    return "# References\n\nMethods used in this run:\n\n" + "".join(f"- {CITATIONS[k]}\n" for k in ordered)
