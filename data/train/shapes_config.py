"""Sizes of the Bonsai Shapes model: the klein architecture, scaled down.
The text encoder's sizes live in the engine (`bonsai-image synthetic --spec
shapes` writes it); its features are 3 × 32 = 96 wide."""

TRANSFORMER = {
    "_class_name": "Flux2Transformer2DModel",
    "patch_size": 1,
    "in_channels": 32,
    "out_channels": None,
    "num_layers": 2,
    "num_single_layers": 4,
    "attention_head_dim": 64,
    "num_attention_heads": 2,
    "joint_attention_dim": 96,
    "timestep_guidance_channels": 256,
    "mlp_ratio": 3.0,
    "axes_dims_rope": [16, 16, 16, 16],
    "rope_theta": 2000,
    "eps": 1e-06,
    "guidance_embeds": False,
}

VAE = {
    "_class_name": "AutoencoderKLFlux2",
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [16, 32, 64, 64],
    "layers_per_block": 1,
    "latent_channels": 8,
    "norm_num_groups": 1,
    "mid_block_add_attention": True,
    "batch_norm_eps": 0.0001,
    "batch_norm_momentum": 0.1,
    "patch_size": [2, 2],
    "act_fn": "silu",
    "sample_size": 128,
    "force_upcast": True,
    "use_quant_conv": True,
    "use_post_quant_conv": True,
}
