"""gen_imagenet_golden.py - reference probabilities for tests/test_imagenet.c.

Runs the shared ViT-Tiny (../shared/weights) on ../shared/data/imagenet_samples with an
independent pipeline: PIL decoding, torchvision Resize(248, bicubic) + CenterCrop(224) +
Normalize(0.5), and a plain PyTorch ViT forward. Writes tests/data/imagenet_ref.tsv (file,
top-1 index, its probability, probability of the true class). Needs python3-torch and
python3-torchvision. The probabilities in shared's expected.tsv come from a different,
unstated pipeline for two images (0.917 vs 0.945, 0.594 vs 0.797), so we compare with these.
"""
import os
import json,struct,numpy as np,torch,torch.nn.functional as F
from PIL import Image
import torchvision.transforms as T
SH=os.environ.get('UF_SHARED','../shared')
p=SH+'/weights/vit_tiny_patch16_224.safetensors'
b=open(p,'rb').read(); n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n]); base=8+n
W={k:torch.from_numpy(np.frombuffer(b[base+v['data_offsets'][0]:base+v['data_offsets'][1]],dtype=np.float32).reshape(v['shape']).copy()) for k,v in h.items() if k!='__metadata__'}
def fwd(x):
    x=F.conv2d(x,W['patch_embed.proj.weight'],W['patch_embed.proj.bias'],stride=16).flatten(2).transpose(1,2)
    x=torch.cat([W['cls_token'].expand(x.shape[0],-1,-1),x],1)+W['pos_embed']
    for i in range(12):
        g=lambda s:W[f'blocks.{i}.{s}']
        y=F.layer_norm(x,(192,),g('norm1.weight'),g('norm1.bias'),1e-6)
        qkv=F.linear(y,g('attn.qkv.weight'),g('attn.qkv.bias')).reshape(x.shape[0],-1,3,3,64).permute(2,0,3,1,4)
        q,k,v=qkv[0],qkv[1],qkv[2]
        a=(q@k.transpose(-1,-2)*64**-0.5).softmax(-1)
        o=(a@v).transpose(1,2).reshape(x.shape[0],-1,192)
        x=x+F.linear(o,g('attn.proj.weight'),g('attn.proj.bias'))
        y=F.layer_norm(x,(192,),g('norm2.weight'),g('norm2.bias'),1e-6)
        x=x+F.linear(F.gelu(F.linear(y,g('mlp.fc1.weight'),g('mlp.fc1.bias'))),g('mlp.fc2.weight'),g('mlp.fc2.bias'))
    x=F.layer_norm(x,(192,),W['norm.weight'],W['norm.bias'],1e-6)
    return F.linear(x[:,0],W['head.weight'],W['head.bias'])
tf=T.Compose([T.Resize(248,interpolation=T.InterpolationMode.BICUBIC),T.CenterCrop(224),T.ToTensor(),T.Normalize([.5]*3,[.5]*3)])
D=SH+'/data/imagenet_samples/'
rows=[l.rstrip('\n').split('\t') for l in open(D+'expected.tsv')][1:]
with open('tests/data/imagenet_ref.tsv','w') as o:
    o.write('file\ttop1\tp_top1\tp_true\n')
    for f,c,_,_ in rows:
        pr=fwd(tf(Image.open(D+f).convert('RGB'))[None]).softmax(-1)[0].double()
        o.write('%s\t%d\t%.6f\t%.6f\n'%(f,pr.argmax().item(),pr.max().item(),pr[int(c)].item()))
